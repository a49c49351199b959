"""Atomic output directories: a run is written to a temporary sibling and renamed into place,
so a crash never leaves a half-written directory that loads, and an earlier run is only replaced
once the new one is complete. Runs of several trainings (soups, MORLHF, MODPO, MaxMin, DPA, RiC)
keep the finished ones on a crash, and the same command resumes from them."""
from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator

from moalign.errors import MoalignError
from moalign.progress import LOG, capture, say, warn


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty `out` unless `overwrite`."""
    if out.exists() and not out.is_dir():
        raise MoalignError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise MoalignError(f"{out}: exists and is not empty (pass --overwrite to replace it)")


def is_main_process() -> bool:
    """False in the other processes of a distributed run (`accelerate launch`, torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


_KEY, _DONE = ".recipe-key", ".step-done"


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@contextlib.contextmanager
def _exclusive(out: Path) -> Iterator[None]:
    """Hold `out`'s lock for the block: two resumable runs into one directory would share its
    partial work. The lock goes with the process, so a crash never leaves it held."""
    import fcntl

    lock = out.parent / f".{out.name}.lock"
    with open(lock, "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MoalignError(f"{out}: another run is writing it; wait for it to finish "
                               "or stop it") from None
        try:
            yield
        finally:
            lock.unlink(missing_ok=True)


def _partial(tmp: Path, key: str, name: str) -> None:
    """Continue in `tmp` if it holds an unfinished run of the same recipe, else start it afresh."""
    if (tmp / _KEY).is_file() and (tmp / _KEY).read_text() == key:
        kept = sorted(str(p.parent.relative_to(tmp)) for p in tmp.rglob(_DONE))
        say(f"resuming {name} from {tmp}: {len(kept)} finished step(s) kept ({', '.join(kept) or 'none'})")
        return
    if tmp.exists():
        say(f"discarding {tmp}: an unfinished run of another recipe")
        shutil.rmtree(tmp)
    tmp.mkdir()
    (tmp / _KEY).write_text(key)


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False, resume: dict | None = None) -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes `out` when the block succeeds.

    With `resume` (the run's recipe), a run that fails keeps its temporary directory, and the next
    run of the same recipe into the same `out` continues in it: the steps that `step` finished are
    not run again. (Not in a distributed run, whose processes must all train the same steps.)
    In a distributed run every process trains and writes, but only the main one publishes: the
    others' copies (identical, as DDP keeps the weights in sync) are discarded."""
    out = Path(out).expanduser().absolute()
    main = is_main_process()
    if main:
        check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    resumable = resume is not None and not _distributed()
    with contextlib.ExitStack() as stack:
        if resumable:
            stack.enter_context(_exclusive(out))
            tmp = out.parent / f".{out.name}.partial"
            _partial(tmp,
                     hashlib.sha256(json.dumps(resume, sort_keys=True, default=str).encode()).hexdigest(),
                     out.name)
        else:
            tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
        try:
            with capture(tmp / LOG):  # library output of this run: its log.txt
                yield tmp
        except BaseException:
            if resumable and any(p.name not in (_KEY, LOG) for p in tmp.iterdir()):
                warn(f"finished steps are kept in {tmp}; the same command continues from them")
            else:  # nothing written yet (a bad input stays a one-line error)
                shutil.rmtree(tmp, ignore_errors=True)
            raise
        if not main:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        for marker in [tmp / _KEY, *tmp.rglob(_DONE)]:
            marker.unlink(missing_ok=True)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if out.exists():
            out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old, ignore_errors=True)


class Stopwatch:
    """`train_seconds`, one definition for every method: the wall time of the method's whole
    training, from the start of its train() to its manifest (data generation, scoring, margins,
    reference log-probs, loading and saving included), less what it measures only for its report
    (`excluded()`: a baseline, oracle scores), plus, in a resumed run, the seconds that the steps an
    earlier attempt finished took then."""

    def __init__(self) -> None:
        self._start, self._offset, self._excluding = time.time(), 0.0, False

    def reused(self, seconds: float) -> None:
        if not self._excluding:
            self._offset += seconds

    @contextlib.contextmanager
    def excluded(self) -> Iterator[None]:
        start, self._excluding = time.time(), True
        try:
            yield
        finally:
            self._offset -= time.time() - start
            self._excluding = False

    def seconds(self) -> float:
        return round(time.time() - self._start + self._offset, 2)


_SHARED: contextvars.ContextVar[Path | None] = contextvars.ContextVar("moalign_shared", default=None)


@contextlib.contextmanager
def sharing(root: Path) -> Iterator[None]:
    """Inside this block, a step given a `share` key (a hash of everything its training reads) is
    trained once into `root` and copied from there when another method asks for the same training:
    `compare` trains the soup's DPO expert on an objective and MODPO's margin model on it once."""
    token = _SHARED.set(Path(root))
    try:
        yield
    finally:
        _SHARED.reset(token)


def share_key(kind: str, **reads) -> str:
    """`<kind>-<hash>` of everything a training reads (JSON-able): equal keys train the same model,
    which `step(share=...)` then trains once inside `sharing`."""
    return f"{kind}-" + hashlib.sha256(json.dumps(reads, sort_keys=True).encode()).hexdigest()[:16]


def step(path: Path, run: Callable[[], object], watch: Stopwatch | None = None,
         share: str | None = None) -> float:
    """`run()` (which writes `path`) unless an earlier attempt of a resumed run finished it, or an
    identical training (`share`) is in the active `sharing` root; the wall seconds it took either way
    (a skipped or copied step's are added to `watch`: the method's cost includes them)."""
    marker = path / _DONE
    root = _SHARED.get()
    shared = root / share if root is not None and share else None
    if not marker.is_file() and shared is not None and (shared / _DONE).is_file():
        shutil.rmtree(path, ignore_errors=True)
        shutil.copytree(shared, path)
    if marker.is_file():
        seconds = float(marker.read_text())
        if watch:
            watch.reused(seconds)
        return seconds
    shutil.rmtree(path, ignore_errors=True)  # a half-written attempt
    start = time.time()
    run()
    seconds = time.time() - start
    marker.write_text(repr(seconds))
    if shared is not None:  # published whole; a process that trained it at the same time keeps its own
        partial = shared.with_name(f"{shared.name}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(path, partial)
        try:
            partial.rename(shared)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
    return seconds


def _weights(step_dir: Path) -> list[Path]:
    """What a chain step wrote besides its record and marker."""
    return [f for f in step_dir.iterdir() if f.name not in ("record.json", _DONE)]


def chain_step(tmp: Path, i: int, run: Callable[[Path, str], dict], *, first: str, rng,
               watch: Stopwatch | None = None) -> dict:
    """Step `i` of a chain whose steps each train from the one before (DPA's rounds, RiC's stages):
    `run(where, current)` trains from `current` (`first` for step 0, else the previous step's model)
    into `where` and returns a JSON-able record, kept with it. The numpy generator `rng`'s state after
    the step is kept too, and restored when a resumed run skips the step, so later steps draw what an
    uninterrupted run would. Returns the record, `seconds` included. Only the latest step keeps its
    weights."""
    chain = tmp / "chain"
    where = chain / f"{i:02d}"

    def timed() -> float:
        start = time.time()
        record = run(where, str(chain / f"{i - 1:02d}") if i else first)
        record.update(seconds=time.time() - start, rng=rng.bit_generator.state)
        (where / "record.json").write_text(json.dumps(record) + "\n")
        return record["seconds"]

    step(where, timed, watch)
    if i:
        for f in _weights(chain / f"{i - 1:02d}"):
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    record = json.loads((where / "record.json").read_text())
    rng.bit_generator.state = record["rng"]
    return record


def end_chain(tmp: Path, i: int) -> None:
    """Move the model of chain step `i` (the last) into `tmp` itself; drop the chain."""
    for f in _weights(tmp / "chain" / f"{i:02d}"):
        f.rename(tmp / f.name)
    shutil.rmtree(tmp / "chain")
