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
    module, cfg, _ = _load(path, overrides)
    return module, cfg


def _load(path: str | os.PathLike, overrides: Sequence[str]):
    """(module, Config, tracker): `report_to`, a key every recipe may have, is not the method's."""
    data = apply_overrides(load_yaml(path), overrides)
    if "method" not in data:
        raise MoalignError(f"{path}: no `method` key (known: {', '.join(sorted(METHODS))})")
    tracker = str(data.pop("report_to", "none"))
    module = method_module(str(data.pop("method")))
    return module, validate(module.Config, data, str(path)), tracker


def train_recipe(path: str | os.PathLike, overrides: Sequence[str] = (), out: str | None = None,
                 overwrite: bool = False, progress: bool = True, report_to: str | None = None) -> Path:
    """Validate a recipe, refuse a non-empty output early, train, return the checkpoint path.
    `report_to` (tensorboard, wandb, trackio, none) overrides the recipe's `report_to` key."""
    from moalign.files import check_out
    from moalign.training import reporting
    module, cfg, tracker = _load(path, overrides)
    target = Path(out or cfg.out).expanduser().absolute()
    check_out(target, overwrite)
    recipe = {"method": module.__name__.rsplit(".", 1)[-1], **cfg.model_dump(), "out": str(target)}
    with reporting(report_to or tracker):
        return module.train(cfg, target, overwrite=overwrite, progress=progress, recipe=recipe)
