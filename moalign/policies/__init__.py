"""Training recipes: a YAML file with `method: <name>` (an entry of `moalign.registry`) and that
method's keys, validated by its `Config`, trained by its `train()`.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Sequence

from moalign.config import apply_overrides, load_yaml, validate
from moalign.errors import MoalignError
from moalign.registry import METHODS, method


def method_module(name: str):
    return importlib.import_module(method(name).module)


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
