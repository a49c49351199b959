"""Where inference models live, decided in one place.

Every model moalign loads to generate, score or embed (policies of every steering kind, a soup's
anchors and row mixer, features, objectives, the server) goes through `place`. The device comes
from `use()` (the CLI's `--device`), else $MOALIGN_DEVICE, else `auto`: cuda, then mps, then cpu.
The dtype comes from $MOALIGN_DTYPE, else `auto`: bfloat16 on a GPU that supports it, else
float32. On the CPU float32 is also the faster one for generation: SmolLM2-135M sampled 108
tokens/s in float32 and 14.5 in bfloat16 (batch 32, 2 cores with AMX, 2026-12-01), and a world
checkpoint's numbers stay as they were. Training placement stays TRL's and accelerate's.
"""
from __future__ import annotations

import os

import torch

from moalign.errors import MoalignError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_chosen: dict[str, str | None] = {"device": None, "dtype": None}


def _available(device: torch.device) -> str | None:
    """Why `device` cannot be used here, or None."""
    if device.type == "cpu":
        return None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "no CUDA GPU is available here"
        if device.index is not None and device.index >= torch.cuda.device_count():
            return f"this machine has {torch.cuda.device_count()} CUDA device(s)"
        return None
    if device.type == "mps":
        return None if torch.backends.mps.is_available() else "MPS is not available here"
    return "known devices: auto, cpu, cuda, cuda:N, mps"


def parse_device(spec: str | None) -> torch.device:
    """The device a spec names (`auto`, `cpu`, `cuda`, `cuda:N`, `mps`), checked to exist here."""
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise MoalignError(f"device {spec!r}: unknown (known: auto, cpu, cuda, cuda:N, mps)") from None
    why = _available(device)
    if why:
        raise MoalignError(f"device {spec!r} is not available: {why}")
    return device


def parse_dtype(spec: str | None, device: torch.device) -> torch.dtype:
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        gpu_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if gpu_bf16 else torch.float32
    if spec not in DTYPES:
        raise MoalignError(f"dtype {spec!r}: unknown (known: auto, {', '.join(DTYPES)})")
    return DTYPES[spec]


def use(device: str | None = None, dtype: str | None = None) -> torch.device:
    """Set the inference device (and dtype) for this process; checked now, so a bad one fails first."""
    if device is not None:
        parse_device(device)
        _chosen["device"] = device
    if dtype is not None:
        parse_dtype(dtype, inference_device())
        _chosen["dtype"] = dtype
    return inference_device()


def inference_device() -> torch.device:
    return parse_device(_chosen["device"] or os.environ.get("MOALIGN_DEVICE"))


def inference_dtype() -> torch.dtype:
    return parse_dtype(_chosen["dtype"] or os.environ.get("MOALIGN_DTYPE"), inference_device())


def place(model):
    """`model` on the inference device in the inference dtype, in eval mode."""
    return model.to(device=inference_device(), dtype=inference_dtype()).eval()


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed memory for reuse (the CLI and `compare`'s workers call this once).
    By default it maps big blocks afresh and trims the heap, so the same tensors of every training
    step fault their pages in again: MODPO's demo recipe took 3.6 million page faults and 11 of its
    144 s CPU in the kernel, 0.1 million and 0.8 s with blocks under 1 GiB kept (2026-12-02, this
    project's 2-core machine). The process holds its peak memory instead. False where the C library
    is not glibc (nothing changed)."""
    import ctypes
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    m_trim_threshold, m_mmap_threshold = -1, -3  # malloc.h
    return bool(libc.mallopt(m_mmap_threshold, 1 << 30) and libc.mallopt(m_trim_threshold, 1 << 30))
