"""The manifest of a checkpoint steered by interpolating the weights of its anchors (soups, MORLHF,
MODPO): each anchor a model (or LoRA adapter) trained at one preference."""
from __future__ import annotations

from pathlib import Path


def anchors_at_vertices(objectives: list[str], paths: dict[str, str]) -> list[dict]:
    return [{"preference": {o: float(o == name) for o in objectives}, "path": paths[name]}
            for name in objectives]


def write_manifest(directory: Path, *, method: str, objectives: list[str], base: str, anchors: list[dict],
                   tokenizer: str, semantics: str, recipe: dict, metrics: dict) -> None:
    from moalign.steerable import Manifest
    Manifest(method=method, objectives=objectives, base_model=base, recipe=recipe, metrics=metrics,
             steering={"kind": "interpolation", "anchors": anchors, "tokenizer": tokenizer,
                       "semantics": semantics}).write(directory)
