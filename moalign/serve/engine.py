"""One engine per served checkpoint: a queue, a batcher and one generation thread.

Requests that the policy can answer with one model (`SteerablePolicy.batch_key`: the same
preference for a soup, any preference for a prompt-conditioned policy) and that share decoding
settings, arriving within `window` seconds, are answered by one batched generate call. All model
work of every checkpoint runs on one thread per process (`model_thread`), so materialised models (a
soup's LRU cache) are never switched under a running generation, and the event loop stays free to
accept requests. One thread, not one per checkpoint: every thread that runs torch ops gets its own
OpenMP pool, and two pools on the same cores put libgomp in its throttled mode, where each parallel
region wakes its threads through the kernel (a decode step's small matmuls ran 1.7x slower on 2 cores
once a second thread had used torch; bench/serve_load.py measures the server).
Prompt checks (rendering and counting tokens) run on a second thread with its own copy of the
tokenizer: a fast tokenizer is not safe to call from two threads at once. Streaming requests run
alone, pushing text to the client as tokens are produced, and stop when the client goes away.

No request can fail or reseed another: a batch that fails is retried job by job, sampled requests
with an explicit seed are batched only with the same seed, and a batch holds at most `max_rows`
rows, so a large request waits for its own batch instead of holding everyone's.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

from moalign.errors import MoalignError
from moalign.models import generate_rendered
from moalign.steerable import SteerablePolicy

_MODEL_THREAD: list[concurrent.futures.ThreadPoolExecutor] = []


def model_thread() -> concurrent.futures.ThreadPoolExecutor:
    """The process's one thread for model work (loading, generation), shared by every engine."""
    if not _MODEL_THREAD:
        _MODEL_THREAD.append(concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                                   thread_name_prefix="moalign-model"))
    return _MODEL_THREAD[0]


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
        (`batch_key`), and the decoding settings must match. A batch samples with one seed, so a
        sampled job that names its seed shares it only with jobs of the same seed; greedy answers do
        not depend on the seed, and jobs without one share a random seed."""
        sampled = self.gen.get("do_sample") is not False  # None: the checkpoint's decoding, which may sample
        gen = {k: v for k, v in self.gen.items() if k != "seed" or sampled}
        return policy.batch_key(self.preference, self.user), tuple(sorted(gen.items(), key=lambda kv: kv[0]))


def _with_seed(gen: dict) -> dict:
    """The decoding settings with a seed: the job's own, or a random one."""
    return {**gen, "seed": gen["seed"] if gen.get("seed") is not None else uuid.uuid4().int % (2 ** 31)}


def context_length(model) -> int | None:
    """Positions the model can attend to (None when its config does not say)."""
    config = getattr(model, "config", None)
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


class _QueueStreamer(TextStreamer):
    """Decoded text pieces, handed to the event loop as they are produced."""

    def __init__(self, tokenizer, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue):
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.loop, self.queue = loop, queue

    def on_finalized_text(self, text: str, stream_end: bool = False):
        if text:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, text)


class _Cancelled(StoppingCriteria):
    """Stops a generation once its client has gone (checked after every token)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs) -> bool:
        return self.event.is_set()


class Engine:
    def __init__(self, name: str, policy: SteerablePolicy, max_batch: int = 16, window: float = 0.01,
                 max_rows: int = 64):
        self.name, self.policy = name, policy
        self.max_batch, self.window, self.max_rows = max_batch, window, max_rows
        self.executor = model_thread()
        self.checker = concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                             thread_name_prefix=f"check-{name}")
        self._check_tokenizer = None  # the checker thread's own copy
        self._context: list[int | None] = []  # the model's context length, once known
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self._carry: _Job | None = None  # a job that did not fit in the last batch's rows
        self.batches = 0  # generate calls made (for tests and stats)
        self.cancelled = 0  # streams stopped because their client went away

    # -- on the generation thread ---------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens in `text`, by the policy's tokenizer: call it on the generation thread only."""
        return len(self.policy.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _context_length(self) -> int | None:
        if not self._context:
            self._context.append(context_length(self.policy.prepare([], None, None)[0]))
        return self._context[0]

    def _run(self, jobs: list[_Job]) -> list[Result]:
        """On the generation thread: one generate call for jobs that share steering and settings."""
        model, texts = self.policy.prepare_batch([(job.prompts, job.preference, job.user) for job in jobs])
        rows = [(p, job.preference, job.user) for job in jobs for p in job.prompts]
        outputs = self.policy.complete(model, texts, rows, batch_size=len(texts), **_with_seed(jobs[0].gen))
        self.batches += 1
        results, start = [], 0
        for job in jobs:
            n = len(job.prompts)
            chunk = outputs[start:start + n]
            results.append(Result(chunk, sum(self.count_tokens(t) for t in texts[start:start + n]),
                                  [self.count_tokens(t) for t in chunk]))
            start += n
        return results

    # -- on the checker thread -------------------------------------------------------------------
    def _count(self, texts: list[str]) -> list[int]:
        if self._check_tokenizer is None:
            self._check_tokenizer = copy.deepcopy(self.policy.tokenizer)
        return [len(ids) for ids in self._check_tokenizer(texts, add_special_tokens=False)["input_ids"]]

    def _check(self, prompts: list, preference, user: str | None, max_new_tokens: int, max_prompt_tokens: int,
               context: int | None) -> None:
        texts = self.policy.render(prompts, preference, user)
        for n in self._count(texts):
            if n > max_prompt_tokens:
                raise MoalignError(f"the prompt has {n} tokens, above this server's cap of "
                                   f"{max_prompt_tokens}")
            if context is not None and n + max_new_tokens > context:
                raise MoalignError(f"the prompt's {n} tokens plus max_tokens {max_new_tokens} exceed the "
                                   f"model's context of {context} tokens")

    # -- on the event loop -----------------------------------------------------------------------
    async def count(self, text: str) -> int:
        """Tokens in `text`, counted off the event loop."""
        return (await asyncio.get_running_loop().run_in_executor(self.checker, self._count, [text]))[0]

    async def check(self, prompts: list, preference, user: str | None, max_new_tokens: int,
                    max_prompt_tokens: int) -> None:
        """Refuse (MoalignError) a prompt over the cap, or one whose answer would not fit the model's
        context: it would fail in generate, and with it every request batched alongside."""
        loop = asyncio.get_running_loop()
        if not self._context:  # once: the model is needed to know it
            await loop.run_in_executor(self.executor, self._context_length)
        await loop.run_in_executor(self.checker, self._check, prompts, preference, user, max_new_tokens,
                                   max_prompt_tokens, self._context[0])

    async def _next_batch(self) -> list[_Job]:
        """Jobs that arrive within the window, up to `max_batch` jobs and `max_rows` rows."""
        loop = asyncio.get_running_loop()
        first, self._carry = self._carry or await self._queue.get(), None
        batch, rows = [first], len(first.prompts)
        deadline = loop.time() + self.window
        while len(batch) < self.max_batch and (remaining := deadline - loop.time()) > 0:
            try:
                job = await asyncio.wait_for(self._queue.get(), remaining)
            except asyncio.TimeoutError:
                break
            if rows + len(job.prompts) > self.max_rows:
                self._carry = job
                break
            batch.append(job)
            rows += len(job.prompts)
        return batch

    async def _answer(self, jobs: list[_Job]) -> None:
        """Run one group; when it fails, each job alone, so one bad job fails only itself."""
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.executor, self._run, jobs)
        except Exception as e:
            if len(jobs) > 1:
                for job in jobs:
                    await self._answer([job])
            elif not jobs[0].future.done():
                jobs[0].future.set_exception(e)
            return
        for job, result in zip(jobs, results):
            if not job.future.done():
                job.future.set_result(result)

    async def _loop(self) -> None:
        while True:
            groups: dict = {}
            for job in await self._next_batch():
                groups.setdefault(job.key(self.policy), []).append(job)
            for jobs in groups.values():
                await self._answer(jobs)

    async def submit(self, prompts: list, preference, user: str | None, gen: dict) -> Result:
        if self._task is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._loop())
        job = _Job(prompts, preference, user, gen, asyncio.get_running_loop().create_future())
        await self._queue.put(job)
        return await job.future

    async def stream(self, prompt, preference, user: str | None, gen: dict) -> AsyncIterator[str | int]:
        """Text pieces of one answer as they are generated, then the prompt's token count (an int).
        Closing the iterator (the client went away) stops the generation at its next token."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        done, gone = object(), threading.Event()
        gen = _with_seed(gen)

        def work() -> int:
            if gone.is_set():
                return 0
            model, texts = self.policy.prepare([prompt], preference, user)
            if self.policy.reranks(user):  # the answer is known only once every candidate is scored
                answer = self.policy.complete(model, texts, [(prompt, preference, user)], **gen)[0]
                loop.call_soon_threadsafe(queue.put_nowait, answer)
                return self.count_tokens(texts[0])
            streamer = _QueueStreamer(self.policy.tokenizer, loop, queue)
            generate_rendered(model, self.policy.tokenizer, texts, batch_size=1, streamer=streamer,
                              stopping_criteria=StoppingCriteriaList([_Cancelled(gone)]), **gen)
            return self.count_tokens(texts[0])

        future = loop.run_in_executor(self.executor, work)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(queue.put_nowait, done))
        try:
            while (piece := await queue.get()) is not done:
                yield piece
            yield future.result()  # re-raises a generation error
        finally:
            if not future.done():
                gone.set()
                self.cancelled += 1

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.checker.shutdown(wait=False, cancel_futures=True)
