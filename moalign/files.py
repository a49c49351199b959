"""Atomic output directories: a run is written to a temporary sibling and renamed into place,
so a crash never leaves a half-written directory that loads, and an earlier run is only replaced
once the new one is complete."""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator

from moalign.errors import MoalignError


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse an existing non-empty `out` unless `overwrite`."""
    if out.exists() and not out.is_dir():
        raise MoalignError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise MoalignError(f"{out}: exists and is not empty (pass --overwrite to replace it)")


def is_main_process() -> bool:
    """False in the other processes of a distributed run (`accelerate launch`, torchrun)."""
    return int(os.environ.get("RANK", "0")) == 0


@contextlib.contextmanager
def atomic_dir(out: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory that becomes `out` when the block succeeds.

    In a distributed run every process trains and writes, but only the main one publishes: the
    others' copies (identical, as DDP keeps the weights in sync) are discarded."""
    out = Path(out).expanduser().absolute()
    main = is_main_process()
    if main:
        check_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not main:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
