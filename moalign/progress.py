"""What a person sees while moalign works: one progress display (the stage, step / total, the time
left, the numbers that matter: loss, reward per objective, HV so far), moalign's own lines, and the
result. Library output (TRL's metric dicts, transformers' and datasets' bars and warnings) goes to
the run's log file, `log.txt` beside its `train_log.json` (`capture`, which every atomic output
directory opens).

Levels, set by the CLI: `quiet` (-q) shows errors and the final result only; `normal` the display;
`verbose` (-v) the display as plain lines, with the library output on the terminal as well. When
the output is not a terminal, the display is plain lines without control codes: one per finished
top-level stage. Until `configure` is called (moalign used as a library), nothing is displayed or
captured."""
from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Iterable, Iterator, Sequence, TypeVar

LEVELS = ("quiet", "normal", "verbose")
LOG = "log.txt"
T = TypeVar("T")


class _State:
    level: str | None = None
    console = None  # moalign's own output: the terminal as it was before any capture
    errors = None
    live = None  # a rich Progress while stages run on a terminal
    stages: list = []
    owned: list = []  # the terminal handles configure opened


_state = _State()


def _terminal(stream, fd: int):
    """A private handle on the terminal behind `stream` (which `capture` does not redirect), or
    `stream` itself when it is not the process's file descriptor `fd` (a test capturing it)."""
    try:
        real = stream.fileno() == fd
    except (AttributeError, OSError, ValueError):
        real = False
    if not real:
        return stream
    stream.flush()
    handle = os.fdopen(os.dup(fd), "w", buffering=1, encoding="utf-8", errors="replace")
    _state.owned.append(handle)
    return handle


def configure(level: str | None):
    """Set the level (None: back to library use). Returns the console results are printed on."""
    from rich.console import Console

    if level is not None and level not in LEVELS:
        raise ValueError(f"unknown level {level!r} (known: {', '.join(LEVELS)})")
    for handle in _state.owned:  # an earlier configure's
        handle.close()
    _state.owned = []
    _state.level, _state.stages = level, []
    if level is None:
        _state.console = _state.errors = None
        return Console()
    _state.console = Console(file=_terminal(sys.stdout, 1), soft_wrap=True)
    _state.errors = Console(file=_terminal(sys.stderr, 2), soft_wrap=True)
    return _state.console


def console():
    """Where moalign prints its results (the terminal, also while library output is captured)."""
    from rich.console import Console
    return _state.console or Console()


def _live_display() -> bool:
    return _state.level == "normal" and _state.console.is_terminal


def say(text: str) -> None:
    """One of moalign's own lines (not shown at `quiet`, nor when moalign is used as a library)."""
    if _state.level in ("normal", "verbose"):
        _state.console.print(text, highlight=False)


def warn(text: str) -> None:
    """A line a person must see at every level (on the terminal's stderr, never into a log)."""
    if _state.errors is not None:
        _state.errors.print(text, highlight=False, markup=False)
    else:
        print(text, file=sys.stderr)


def clock(seconds: float) -> str:
    """`42 s`, or `m:ss` from a minute on."""
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds >= 60 else f"{seconds} s"


class Stage:
    """One stage of work: `update(total=, completed=, advance=, **numbers)` as it goes."""

    def __init__(self, label: str, total: int | None, depth: int):
        self.label, self.total, self.depth = label, total, depth
        self.completed, self.numbers, self.start, self.task = 0, {}, time.time(), None

    def update(self, *, total: int | None = None, completed: int | None = None, advance: int = 0,
               **numbers: float) -> None:
        if total is not None:
            self.total = total
        self.completed = (self.completed if completed is None else completed) + advance
        self.numbers.update(numbers)
        if _state.stages and self is not _state.stages[0]:
            _state.stages[0].numbers.update(numbers)  # the top stage's line ends with the latest numbers
        if self.task is not None:
            _state.live.update(self.task, total=self.total, completed=self.completed,
                               numbers=self.shown_numbers())

    def shown_numbers(self) -> str:
        return "  ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                         for k, v in self.numbers.items())

    def summary(self, failed: bool) -> str:
        steps = f" {self.completed}/{self.total}" if self.total else ""
        end = "stopped" if failed else "done"
        numbers = self.shown_numbers()
        return (f"{'  ' * self.depth}{self.label}:{steps} {end} in {clock(time.time() - self.start)}"
                + (f"  ({numbers})" if numbers else ""))


@contextlib.contextmanager
def stage(label: str, total: int | None = None) -> Iterator[Stage]:
    """A stage of work shown on the display; inside another stage it is a sub-stage."""
    current = Stage(label, total, len(_state.stages))
    if _state.level is None:
        yield current
        return
    _state.stages.append(current)
    if _live_display():
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        if _state.live is None:
            _state.live = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                   TimeElapsedColumn(), TimeRemainingColumn(),
                                   TextColumn("{task.fields[numbers]}"),
                                   console=_state.console, transient=True,
                                   redirect_stdout=False, redirect_stderr=False)
            _state.live.start()
        current.task = _state.live.add_task("  " * current.depth + label, total=total, numbers="")
    failed = True
    try:
        yield current
        failed = False
    finally:
        _state.stages.pop()
        if current.task is not None:
            _state.live.remove_task(current.task)
        if not _state.stages and _state.live is not None:
            _state.live.stop()
            _state.live = None
        if _state.level != "quiet" and (current.depth == 0 or _state.level == "verbose"):
            _state.console.print(current.summary(failed), highlight=False, markup=False)


def current() -> Stage | None:
    """The innermost stage running (what a trainer's steps advance)."""
    return _state.stages[-1] if _state.stages else None


def track(items: Sequence[T], label: str, enabled: bool = True) -> Iterable[T]:
    """`items`, one step of a stage each."""
    if not enabled:
        yield from items
        return
    with stage(label, total=len(items)) as s:
        for item in items:
            yield item
            s.update(advance=1)


def trainer_callback():
    """A transformers TrainerCallback that advances the innermost stage with the trainer's steps and
    shows its loss and rewards."""
    from transformers import TrainerCallback

    class StageProgress(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if current():
                current().update(total=state.max_steps, completed=0)

        def on_step_end(self, args, state, control, **kwargs):
            if current():
                current().update(completed=state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if current() and logs:
                current().update(**_numbers(logs))

    return StageProgress()


def _numbers(logs: dict) -> dict[str, float]:
    """The numbers worth a glance from a trainer's log: loss, DPO accuracy, reward (per objective)."""
    shown = {}
    for key, value in logs.items():
        if key == "loss" or key == "reward":
            shown[key] = float(value)
        elif key == "rewards/accuracies":
            shown["acc"] = float(value)
        elif key.startswith("rewards/") and key.endswith("/mean"):
            shown[key.split("/")[1]] = float(value)
    return shown


@contextlib.contextmanager
def capture(path: Path) -> Iterator[None]:
    """Library output (everything written to file descriptors 1 and 2, C libraries included) goes to
    `path` for the block (not at `verbose`, nor when moalign is used as a library). An empty log is
    removed."""
    if _state.level not in ("quiet", "normal"):
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = os.dup(1), os.dup(2)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])
        if path.is_file() and path.stat().st_size == 0:
            path.unlink()
