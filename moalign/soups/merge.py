"""Merging to disk through mergekit (the only module that imports it).

`merge_to_disk` writes the model an interpolation checkpoint gives for a preference as a plain HF
directory with mergekit's `run_merge`: `linear` (sum lambda_a theta_a / sum lambda_a, the soup
itself), or `task_arithmetic` / `ties` relative to the base (theta_0 + sum lambda_a tau_a, with
TIES trimming to `density` and sign election). Paths are made absolute first: mergekit reads a
relative path as a hub id. LoRA anchors are given to mergekit as `base+adapter`.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Literal

from moalign.errors import MoalignError

Method = Literal["linear", "task_arithmetic", "ties"]
METHODS = ("linear", "task_arithmetic", "ties")


def _model_ref(path: Path) -> str:
    path = Path(path).absolute()
    adapter = path / "adapter_config.json"
    if adapter.exists():
        base = json.loads(adapter.read_text())["base_model_name_or_path"]
        return f"{Path(base).absolute() if Path(base).exists() else base}+{path}"
    return str(path)


def merge_to_disk(anchors: list[tuple[Path, float]], out: str | os.PathLike, *, method: Method = "linear",
                  base: Path | None = None, density: float = 1.0, tokenizer: Path | None = None,
                  dtype: str = "float32") -> Path:
    """Merge weighted anchors into `out` (absent or empty) with mergekit."""
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    if method not in METHODS:
        raise MoalignError(f"unknown merge method {method!r} (known: {', '.join(METHODS)})")
    used = [(p, w) for p, w in anchors if w > 0]
    out = Path(out).absolute()
    if len(used) == 1 and method == "linear":  # mergekit needs two models; one is a copy
        src = Path(used[0][0])
        if (src / "adapter_config.json").exists():
            from moalign.soups.interpolate import load_anchor
            load_anchor(src).save_pretrained(out)
        else:
            shutil.copytree(src, out, ignore=shutil.ignore_patterns("moalign.json", "train_log.json"),
                            dirs_exist_ok=True)
    else:
        models = [{"model": _model_ref(p), "parameters": {"weight": float(w)}} for p, w in used]
        config = {"merge_method": method, "dtype": dtype, "models": models}
        if method != "linear":
            if base is None:
                raise MoalignError(f"merge method {method!r} needs the base model")
            config["base_model"] = _model_ref(base)
            if method == "ties":
                for m in models:
                    m["parameters"]["density"] = float(density)
        run_merge(MergeConfiguration.model_validate(config), str(out),
                  MergeOptions(copy_tokenizer=False, quiet=True, write_model_card=False))
    if tokenizer is not None:
        from moalign.models import load_tokenizer
        load_tokenizer(tokenizer).save_pretrained(out)
    return out


def _with_system(tokenizer, system: str):
    """A copy of `tokenizer` whose chat template opens every conversation with `system`, the way
    moalign renders prompts for a policy that steers through the system message: the exported model
    is then steered by any chat-template user (transformers, vLLM) without moalign."""
    import copy

    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template:
        raise MoalignError("this checkpoint steers through the system message, and its tokenizer has no chat "
                           "template to carry that into an exported model; generate with moalign, or put "
                           f"this text before your prompts yourself: {system!r}")
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = ("{%- set messages = [{'role': 'system', 'content': " + json.dumps(system) + "}] + messages %}"
                         + template)
    return tok


def export(policy, preference, out: str | os.PathLike, *, method: Method = "linear", density: float = 1.0,
           overwrite: bool = False) -> Path:
    """The model `policy` gives for `preference`, written as a plain HF directory. Interpolation
    checkpoints go through mergekit; other kinds save the model they materialise (linear only)."""
    from moalign.files import atomic_dir
    from moalign.soups.interpolate import InterpolationPolicy

    pref = policy.preference(preference)
    with atomic_dir(out, overwrite) as tmp:
        if isinstance(policy, InterpolationPolicy):
            lam = policy.coefficients(pref)
            base = Path(policy.manifest.base_model) if policy.manifest.base_model else None
            merge_to_disk(list(zip(policy.anchor_paths, lam)), tmp, method=method, base=base, density=density,
                          tokenizer=policy.tokenizer_path)
        else:
            if method != "linear":
                raise MoalignError(f"merge method {method!r} needs an interpolation checkpoint (soup or front); "
                                   f"this one is {policy.kind!r}")
            system = policy.system_text(pref)
            policy.model_for(pref).save_pretrained(tmp)
            (policy.tokenizer if system is None else _with_system(policy.tokenizer, system)).save_pretrained(tmp)
    return Path(out).absolute()
