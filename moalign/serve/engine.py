"""One engine per served checkpoint: a queue, a batcher and one generation thread.

Requests that the policy can answer with one model (`SteerablePolicy.batch_key`: the same
preference for a soup, any preference for a prompt-conditioned policy) and that share decoding
settings, arriving within `window` seconds, are answered by one batched generate call. All model work of a checkpoint
runs on its own single thread, so materialised models (a soup's LRU cache) are never switched
under a running generation, and the event loop stays free to accept requests. Streaming requests
run alone, pushing text to the client as tokens are produced.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from transformers import TextStreamer

from moalign.models import generate_rendered
from moalign.steerable import SteerablePolicy


@dataclass
class Result:
    texts: list[str]
    prompt_tokens: int
    completion_tokens: list[int]


@dataclass
class _Job:
    prompts: list
    preference: Any
    user: str | None
    gen: dict
    future: asyncio.Future = field(default=None)

    def key(self, policy: SteerablePolicy):
        """Jobs with equal keys share a generate call: the policy says which steerings share a model
        (`batch_key`), and the decoding settings must match. The seed is left out: a batch samples
        with its first job's seed, so a seed reproduces a sampled answer only when it was generated
        alone (OpenAI's seed is best effort too; greedy answers do not depend on it)."""
        return (policy.batch_key(self.preference, self.user),
                tuple(sorted((k, v) for k, v in self.gen.items() if k != "seed")))


class _QueueStreamer(TextStreamer):
    """Decoded text pieces, handed to the event loop as they are produced."""

    def __init__(self, tokenizer, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.loop, self.queue = loop, queue

    def on_finalized_text(self, text: str, stream_end: bool = False):
        if text:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, text)


class Engine:
    def __init__(self, name: str, policy: SteerablePolicy, max_batch: int = 16, window: float = 0.01):
        self.name, self.policy = name, policy
        self.max_batch, self.window = max_batch, window
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gen-{name}")
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0  # generate calls made (for tests and stats)

    def count_tokens(self, text: str) -> int:
        return len(self.policy.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _run(self, jobs: list[_Job]) -> list[Result]:
        """On the generation thread: one generate call for jobs that share steering and settings."""
        model, texts = self.policy.prepare_batch([(job.prompts, job.preference, job.user) for job in jobs])
        rows = [(p, job.preference, job.user) for job in jobs for p in job.prompts]
        outputs = self.policy.complete(model, texts, rows, batch_size=len(texts), **jobs[0].gen)
        self.batches += 1
        results, start = [], 0
        for job in jobs:
            n = len(job.prompts)
            chunk = outputs[start:start + n]
            results.append(Result(chunk, sum(self.count_tokens(t) for t in texts[start:start + n]),
                                  [self.count_tokens(t) for t in chunk]))
            start += n
        return results

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await self._queue.get()]
            deadline = loop.time() + self.window
            while len(batch) < self.max_batch and (remaining := deadline - loop.time()) > 0:
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            groups: dict = {}
            for job in batch:
                groups.setdefault(job.key(self.policy), []).append(job)
            for jobs in groups.values():
                try:
                    results = await loop.run_in_executor(self.executor, self._run, jobs)
                except Exception as e:  # answered per request; the loop keeps serving
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(e)
                    continue
                for job, result in zip(jobs, results):
                    if not job.future.done():
                        job.future.set_result(result)

    async def submit(self, prompts: list, preference, user: str | None, gen: dict) -> Result:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._loop())
        job = _Job(prompts, preference, user, gen, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.future

    async def stream(self, prompt, preference, user: str | None, gen: dict) -> AsyncIterator[str | int]:
        """Text pieces of one answer as they are generated, then the prompt's token count (an int)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done = object()

        def work() -> int:
            model, texts = self.policy.prepare([prompt], preference, user)
            if self.policy.reranks(user):  # the answer is known only once every candidate is scored
                answer = self.policy.complete(model, texts, [(prompt, preference, user)], **gen)[0]
                loop.call_soon_threadsafe(queue.put_nowait, answer)
                return self.count_tokens(texts[0])
            streamer = _QueueStreamer(self.policy.tokenizer, loop, queue)
            generate_rendered(model, self.policy.tokenizer, texts, batch_size=1, streamer=streamer, **gen)
            return self.count_tokens(texts[0])

        future = loop.run_in_executor(self.executor, work)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(queue.put_nowait, done))
        while (piece := await queue.get()) is not done:
            yield piece
        yield future.result()  # re-raises a generation error

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
