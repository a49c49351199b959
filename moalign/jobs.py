"""Trainings side by side (`compare --jobs N`, the demo): N methods train at once, each in its own
process with cpus // N torch threads. The world's tiny models train as fast on one thread as on
two (per-operation overhead bounds them, not arithmetic: CLP's 20 steps took 24.1 s on one thread,
26.4 s on two, on this project's 2-core machine), so two at a time nearly halve the wall time.
Each worker keeps its own run's log.txt; the display shows a line as each method finishes."""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from moalign.errors import MoalignError


@dataclass(frozen=True)
class Training:
    label: str
    recipe: str
    overrides: tuple[str, ...]
    out: str
    report_to: str | None = None
    after: tuple[str, ...] = ()  # labels of trainings to finish first (their trainings are reused)


def _start_worker(threads: int, device: str | None, dtype: str | None) -> None:
    import torch

    from moalign import progress
    from moalign.device import keep_freed_memory, use
    keep_freed_memory()
    torch.set_num_threads(threads)
    use(device, dtype)
    progress.configure("quiet")  # library output into each run's log.txt; nothing on the terminal


def _train(job: Training, shared: str) -> float:
    from moalign.files import sharing
    from moalign.policies import train_recipe

    start = time.time()
    with sharing(Path(shared)):
        train_recipe(job.recipe, list(job.overrides), out=job.out, overwrite=True, report_to=job.report_to)
    return time.time() - start


def _ready(waiting: list[Training], running: Iterable[Training]) -> Training | None:
    """The first waiting training none of whose `after` is waiting or running (None: none yet)."""
    busy = {job.label for job in (*waiting, *running)}
    return next((job for job in waiting if not busy & set(job.after)), None)


def train_all(trainings: list[Training], jobs: int, shared: Path,
              done: Callable[[Training], str | None] | None = None) -> None:
    """Train every recipe, `jobs` at a time, in order, each once its `after` have finished (the first
    error stops the rest and is raised), calling `done(training)` here as each finishes (compare
    traces its front while the others train; what it returns ends the training's line)."""
    import torch

    from moalign.device import _chosen
    from moalign.progress import clock, say, stage

    threads = max(1, (os.cpu_count() or 1) // jobs)
    with stage(f"training {len(trainings)} methods, {jobs} at a time ({threads} thread(s) each)",
               total=len(trainings)) as shown:
        pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
            initargs=(threads, _chosen["device"], _chosen["dtype"]))
        try:
            waiting, futures = list(trainings), {}

            def submit() -> None:  # fill the free workers, before this process traces a front
                while len(futures) < jobs and (job := _ready(waiting, futures.values())) is not None:
                    waiting.remove(job)
                    futures[pool.submit(_train, job, str(shared))] = job

            submit()
            while futures:
                future = next(concurrent.futures.as_completed(futures))
                job = futures.pop(future)
                seconds = future.result()
                submit()
                note = None
                if done is not None:
                    own = torch.get_num_threads()
                    torch.set_num_threads(threads)  # this process's share while the workers train
                    try:
                        note = done(job)
                    finally:
                        torch.set_num_threads(own)
                shown.numbers.clear()  # a front's numbers belong on its method's line, not this stage's
                say(f"{job.label}: done in {clock(seconds)}" + (f", {note}" if note else ""))
                shown.update(advance=1)
            if waiting:
                raise MoalignError(f"trainings wait for each other: {', '.join(j.label for j in waiting)}")
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
