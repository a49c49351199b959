"""Exporting one preference of a checkpoint: a plain HF model (mergekit) or one peft LoRA adapter.

`merge_to_disk` writes the model an interpolation checkpoint gives for a preference as a plain HF
directory with mergekit's `run_merge`: `linear` (sum lambda_a theta_a / sum lambda_a, the soup
itself), or `task_arithmetic` / `ties` relative to the base (theta_0 + sum lambda_a tau_a, with
TIES trimming to `density` and sign election). Paths are made absolute first: mergekit reads a
relative path as a hub id. LoRA anchors are merged into their base by peft first (as the in-memory
soup does, into a scratch directory beside the output that is always removed), so mergekit sees
plain model directories. (`export` writes the `linear` mix of LoRA adapters without mergekit: the
base with their `cat` adapter merged in, one model load instead of one per adapter.)

`cat_adapters` is the adapter form of a linear mix of LoRA adapters over one base, peft's `cat`
combination: theta_0 + sum_i w_i s_i B_i A_i = theta_0 + B A with A = [A_1; ...; A_n] and
B = [w_1 s_1 B_1, ..., w_n s_n B_n], rank sum_i r_i and scaling 1 (lora_alpha = r). A module that
an adapter does not target gets a zero block, so every module has the same rank.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator, Literal

from moalign.errors import MoalignError

Method = Literal["linear", "task_arithmetic", "ties"]
METHODS = ("linear", "task_arithmetic", "ties")
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
LORA_KEY = re.compile(r"^(.*)\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)(\.weight)?$")


def is_adapter(path: str | os.PathLike) -> bool:
    return (Path(path) / "adapter_config.json").exists()


@contextlib.contextmanager
def failing(stage: str) -> Iterator[None]:
    """Turn a library's exception (mergekit, peft, transformers, safetensors) into one line."""
    try:
        yield
    except MoalignError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure inside the libraries is reported, not traced
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        cause = f"{type(e).__name__}: {lines[0][:300]}" if lines else type(e).__name__
        raise MoalignError(f"{stage}: {cause}") from None


def load_float32(path: str | os.PathLike):
    """A model (a LoRA adapter merged into its base) on the CPU in float32, wherever inference runs:
    an export is a one-off written at full precision."""
    import torch
    from transformers import AutoModelForCausalLM

    from moalign.models import check_weights, resolve

    check_weights(path)
    if is_adapter(path):
        from peft import AutoPeftModelForCausalLM
        model = AutoPeftModelForCausalLM.from_pretrained(resolve(path), dtype=torch.float32)
        return model.merge_and_unload()
    return AutoModelForCausalLM.from_pretrained(resolve(path), dtype=torch.float32)


def _dense(path: Path, scratch: Path) -> Path:
    """`path` itself, or for a LoRA adapter the model it gives merged into its base (in `scratch`)."""
    if not is_adapter(path):
        return Path(path).absolute()
    target = Path(tempfile.mkdtemp(dir=scratch))
    with failing(f"peft could not merge adapter {path} into its base"):
        load_float32(path).save_pretrained(target)
    return target


def merge_to_disk(anchors: list[tuple[Path, float]], out: str | os.PathLike, *, method: Method = "linear",
                  base: Path | None = None, density: float = 1.0, tokenizer: Path | None = None,
                  dtype: str = "float32") -> Path:
    """Merge weighted anchors (model or LoRA adapter directories) into `out` with mergekit."""
    if method not in METHODS:
        raise MoalignError(f"unknown merge method {method!r} (known: {', '.join(METHODS)})")
    if method != "linear" and base is None:
        raise MoalignError(f"merge method {method!r} needs the base model")
    used = [(Path(p), w) for p, w in anchors if w > 0]
    out = Path(out).absolute()
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.anchors-") as scratch:
        if len(used) == 1 and method == "linear":  # mergekit needs two models; one is a copy
            src = _dense(used[0][0], Path(scratch))
            shutil.copytree(src, out, ignore=shutil.ignore_patterns("moalign.json", "train_log.json"),
                            dirs_exist_ok=True)
        else:
            _run_mergekit([(_dense(p, Path(scratch)), w) for p, w in used], out, method,
                          None if base is None else _dense(base, Path(scratch)), density, dtype)
    if tokenizer is not None:
        from moalign.models import load_tokenizer
        load_tokenizer(tokenizer).save_pretrained(out)
    return out


def _run_mergekit(used: list[tuple[Path, float]], out: Path, method: str, base: Path | None, density: float,
                  dtype: str) -> None:
    from mergekit.config import MergeConfiguration
    from mergekit.merge import MergeOptions, run_merge

    models = [{"model": str(p), "parameters": {"weight": float(w)}} for p, w in used]
    config = {"merge_method": method, "dtype": dtype, "models": models}
    if method != "linear":
        config["base_model"] = str(base)
        if method == "ties":
            for m in models:
                m["parameters"]["density"] = float(density)
    with failing(f"mergekit's {method} merge failed"):
        run_merge(MergeConfiguration.model_validate(config), str(out),
                  MergeOptions(copy_tokenizer=False, quiet=True, write_model_card=False))


def _read_adapter(path: Path) -> tuple[dict, dict]:
    """An adapter directory's config and tensors, refusing what does not combine as one LoRA."""
    import torch

    with failing(f"cannot read adapter {path}"):
        config = json.loads((path / "adapter_config.json").read_text())
        if (path / ADAPTER_WEIGHTS[0]).exists():
            from safetensors.torch import load_file
            tensors = load_file(path / ADAPTER_WEIGHTS[0])
        else:
            tensors = torch.load(path / ADAPTER_WEIGHTS[1], map_location="cpu", weights_only=True)
    unsupported = [k for k in ("use_dora", "rank_pattern", "alpha_pattern", "modules_to_save")
                   if config.get(k)]
    if config.get("peft_type", "LORA") != "LORA" or config.get("bias", "none") != "none" or unsupported:
        what = ", ".join(unsupported) or "its type or bias"
        raise MoalignError(f"adapter {path}: {what} does not combine into one LoRA adapter; merge to a full "
                           "model instead (without --as-adapter)")
    strays = [k for k in tensors if not LORA_KEY.match(k)]
    if strays:
        raise MoalignError(f"adapter {path}: tensor {strays[0]} is not a LoRA matrix; merge to a full model "
                           "instead (without --as-adapter)")
    return config, tensors


def _scaling(config: dict) -> float:
    r, alpha = config["r"], config["lora_alpha"]
    return alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r


def _modules(tensors: dict) -> dict[str, tuple[str, str]]:
    """module prefix -> (its A key, its B key)."""
    found: dict[str, dict[str, str]] = {}
    for key in tensors:
        prefix, kind, _ = LORA_KEY.match(key).groups()
        found.setdefault(prefix, {})[kind[-1]] = key
    return {m: (k["A"], k["B"]) for m, k in found.items()}


def _cat_module(prefix: str, parts: list[tuple[dict, dict, float]]) -> tuple:
    """The (A, B) of one module: its adapters' blocks stacked, zero where an adapter skips it."""
    import torch

    holder = next((c, t) for c, t, _ in parts if prefix in _modules(t))
    a_key, b_key = _modules(holder[1])[prefix]
    shape_a, shape_b = holder[1][a_key].shape, holder[1][b_key].shape
    blocks_a, blocks_b = [], []
    for config, tensors, w in parts:
        keys = _modules(tensors).get(prefix)
        r = config["r"]
        if keys is None:
            blocks_a.append(torch.zeros((r, *shape_a[1:])))
            blocks_b.append(torch.zeros((shape_b[0], r, *shape_b[2:])))
            continue
        blocks_a.append(tensors[keys[0]].float())
        blocks_b.append(tensors[keys[1]].float() * (w * _scaling(config)))
    return (a_key, torch.cat(blocks_a, 0)), (b_key, torch.cat(blocks_b, 1))


def cat_adapters(adapters: list[tuple[Path, float]], base: str) -> tuple[dict, dict]:
    """One LoRA adapter (config, tensors) equal to base + sum_i w_i s_i B_i A_i (peft's `cat`)."""
    parts = [(*_read_adapter(Path(p)), float(w)) for p, w in adapters if w != 0]
    if not parts:
        raise MoalignError("no adapter has a non-zero weight at this preference")
    prefixes = list(dict.fromkeys(m for _, t, _ in parts for m in _modules(t)))
    tensors = {}
    for prefix in prefixes:
        for key, value in _cat_module(prefix, parts):
            tensors[key] = value.contiguous()
    rank = sum(c["r"] for c, _, _ in parts)
    config = dict(parts[0][0], r=rank, lora_alpha=rank, use_rslora=False, base_model_name_or_path=base,
                  inference_mode=True)
    if any(_placement(c) != _placement(config) for c, _, _ in parts):  # name exactly the modules then
        config.update(target_modules=[_module_name(p) for p in prefixes], layers_to_transform=None,
                      layers_pattern=None, exclude_modules=None)
    return config, tensors


def _placement(config: dict) -> str:
    """Which modules an adapter config targets."""
    return json.dumps([config.get(k) for k in ("target_modules", "layers_to_transform", "layers_pattern",
                                               "exclude_modules")])


def _module_name(prefix: str) -> str:
    return prefix.removeprefix("base_model.model.")


def write_adapter(adapters: list[tuple[Path, float]], base: str, out: Path) -> Path:
    from safetensors.torch import save_file

    config, tensors = cat_adapters(adapters, base)
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / ADAPTER_WEIGHTS[0]), metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return out


def _with_system(tokenizer, system: str):
    """A copy of `tokenizer` whose chat template opens every conversation with `system`, the way
    moalign renders prompts for a policy that steers through the system message: the exported model
    is then steered by any chat-template user (transformers, vLLM) without moalign."""
    import copy

    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not template:
        raise MoalignError("this checkpoint steers through the system message, and its tokenizer has no "
                           "chat template to carry that into an exported model; generate with moalign, or "
                           f"put this text before your prompts yourself: {system!r}")
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = ("{%- set messages = [{'role': 'system', 'content': " + json.dumps(system)
                         + "}] + messages %}" + template)
    return tok


def adapter_base(path: Path) -> str:
    """The base model an adapter directory loads over, as peft finds it (a local path made absolute)."""
    from moalign.models import resolve

    with failing(f"cannot read adapter {path}"):
        config = json.loads((Path(path) / "adapter_config.json").read_text())
        return resolve(config["base_model_name_or_path"])


def _lora_mixture(policy, pref) -> tuple[str | None, list[tuple[Path, float]]] | None:
    """(base, [(adapter dir, weight)]) when the preference's model is one base plus LoRA adapters; the
    base is None when the adapters were trained over different bases."""
    from moalign.soups.interpolate import InterpolationPolicy

    if isinstance(policy, InterpolationPolicy):
        used = [(p, float(w)) for p, w in zip(policy.anchor_paths, policy.coefficients(pref)) if w > 0]
        if not all(is_adapter(p) for p, _ in used):
            return None
        bases = {adapter_base(p) for p, _ in used}
        return (bases.pop() if len(bases) == 1 else None), used
    if hasattr(policy, "adapter_mixture"):
        return policy.base_path, policy.adapter_mixture(pref)
    if policy.kind == "fixed" and is_adapter(policy.path):  # a plain peft adapter directory
        return adapter_base(policy.path), [(policy.path, 1.0)]
    return None


def _merged_adapter(base: str, adapter: Path):
    """The base with one adapter merged in (peft), as a plain transformers model."""
    from peft import PeftModel

    with failing(f"peft could not merge the mixed adapter into base {base}"):
        return PeftModel.from_pretrained(load_float32(base), str(adapter)).merge_and_unload()


def _one_adapter(policy, pref, method: Method) -> tuple[str, list[tuple[Path, float]]]:
    """The base and weighted adapters that --as-adapter combines, or why there are none."""
    if method != "linear":
        raise MoalignError(f"--as-adapter writes the linear mix of LoRA adapters (peft's cat); {method!r} "
                           "trims or rescales the dense deltas, so it needs a full model "
                           "(drop --as-adapter)")
    lora = _lora_mixture(policy, pref)
    if lora is None:
        raise MoalignError(f"--as-adapter needs a checkpoint whose weights are LoRA adapters; this one "
                           f"({policy.kind!r}) has full weights at {pref}")
    if lora[0] is None:
        bases = ", ".join(sorted({adapter_base(p) for p, _ in lora[1]}))
        raise MoalignError(f"--as-adapter: the adapters mixed at {pref} were trained over different bases "
                           f"({bases}); merge to a full model instead (without --as-adapter)")
    return lora


def _export(policy, pref, tmp: Path, method: Method, density: float, as_adapter: bool) -> None:
    if as_adapter:
        base, adapters = _one_adapter(policy, pref, method)
        write_adapter(adapters, base, tmp)
    else:
        _write_model(policy, pref, tmp, method, density)
    system = policy.system_text(pref)
    (policy.tokenizer if system is None else _with_system(policy.tokenizer, system)).save_pretrained(tmp)


def _write_model(policy, pref, tmp: Path, method: Method, density: float) -> None:
    from moalign.soups.interpolate import InterpolationPolicy

    lora = _lora_mixture(policy, pref)
    if isinstance(policy, InterpolationPolicy) and (method != "linear" or lora is None or lora[0] is None):
        base = Path(policy.manifest.base_model) if policy.manifest.base_model else None
        anchors = list(zip(policy.anchor_paths, policy.coefficients(pref)))
        merge_to_disk(anchors, tmp, method=method, base=base, density=density)
    elif method != "linear":
        raise MoalignError(f"merge method {method!r} needs an interpolation checkpoint (soup or front); "
                           f"this one is {policy.kind!r}")
    elif lora is not None:  # the linear mix of LoRA adapters: one base load, not one per adapter
        with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=f".{tmp.name}.adapter-") as scratch:
            write_adapter(lora[1], lora[0], Path(scratch))
            _merged_adapter(lora[0], Path(scratch)).save_pretrained(tmp)
    else:
        policy.model_for(pref).save_pretrained(tmp)


def export(policy, preference, out: str | os.PathLike, *, method: Method = "linear", density: float = 1.0,
           overwrite: bool = False, as_adapter: bool = False) -> Path:
    """The model `policy` gives for `preference`, written as a plain HF directory (or, with
    `as_adapter`, as one peft LoRA adapter over the base). Interpolation checkpoints go through
    mergekit, but for the linear mix of LoRA adapters (their cat adapter merged into the base);
    other kinds save the model they materialise (linear only). Any failure is one line naming the
    checkpoint, and `out` is only written once everything succeeded."""
    from moalign.files import atomic_dir

    if method not in METHODS:
        raise MoalignError(f"unknown merge method {method!r} (known: {', '.join(METHODS)})")
    pref = policy.preference(preference)
    with atomic_dir(out, overwrite) as tmp:
        try:
            with failing("failed"):
                _export(policy, pref, tmp, method, density, as_adapter)
        except MoalignError as e:
            raise MoalignError(f"cannot export {policy.path} at {pref}: {e}") from None
    return Path(out).absolute()
