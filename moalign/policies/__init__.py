"""Training methods. Each is one module with a pydantic `Config` and `train(cfg, out, ...) -> Path`
that writes a steerable checkpoint (or, for `reward_model`, a reward model to use as `hf:<dir>`);
this dict literal is the registry `moalign train` dispatches on.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Sequence

from moalign.config import apply_overrides, load_yaml, validate
from moalign.errors import MoalignError

METHODS = {
    "sft": "moalign.policies.sft",
    "soup": "moalign.soups.soup",
    "morlhf": "moalign.policies.morlhf",
    "modpo": "moalign.policies.modpo",
    "reward_model": "moalign.policies.reward_model",
    "ric": "moalign.policies.ric",
    "dpa": "moalign.policies.dpa",
    "clp": "moalign.policies.clp",
    "maxmin": "moalign.policies.maxmin",
    "pal": "moalign.policies.pal",
}


def method_module(name: str):
    if name not in METHODS:
        raise MoalignError(f"unknown method {name!r} (known: {', '.join(sorted(METHODS))})")
    return importlib.import_module(METHODS[name])


def load_recipe(path: str | os.PathLike, overrides: Sequence[str] = ()):
    """(module, validated Config) for a recipe YAML with `method: <name>` and that method's keys."""
    data = apply_overrides(load_yaml(path), overrides)
    if "method" not in data:
        raise MoalignError(f"{path}: no `method` key (known: {', '.join(sorted(METHODS))})")
    module = method_module(str(data.pop("method")))
    return module, validate(module.Config, data, str(path))


def train_recipe(path: str | os.PathLike, overrides: Sequence[str] = (), out: str | None = None,
                 overwrite: bool = False, progress: bool = True) -> Path:
    """Validate a recipe, refuse a non-empty output early, train, return the checkpoint path."""
    from moalign.files import check_out
    module, cfg = load_recipe(path, overrides)
    target = Path(out or cfg.out).expanduser().absolute()
    check_out(target, overwrite)
    recipe = {"method": module.__name__.rsplit(".", 1)[-1], **cfg.model_dump(), "out": str(target)}
    return module.train(cfg, target, overwrite=overwrite, progress=progress, recipe=recipe)
