"""Recipes and eval suites: YAML files validated by strict pydantic models.

Unknown keys are errors (TRL and mergekit let them through silently; we do not), and every problem
of a file is reported at once, in one line. `key=value` overrides (dotted keys for nesting) are
applied before validation, with values parsed as YAML (`lr=1e-4`, `lora.r=8`, `grid=4`).
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Annotated, Any, Sequence, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from moalign.errors import MoalignError

M = TypeVar("M", bound=BaseModel)
Seed = Annotated[int, Field(ge=0)]  # numpy's generators refuse negative seeds


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


def refuse_objective_list(data, example: str):
    """`objectives` is always name -> spec: its old spelling, a list of names, is refused with the new."""
    if isinstance(data, dict) and isinstance(data.get("objectives"), list):
        raise ValueError(f"objectives: a list of names is the old spelling; write name -> spec, e.g. "
                         f"objectives: {example}")
    return data


class Generation(Strict):
    """Decoding used for rollouts; recorded with every front (fronts depend on it). A sampling
    setting left out comes from the checkpoint's generation_config (see moalign.models.decoding)."""
    max_new_tokens: int = Field(64, ge=1, le=4096)
    do_sample: bool | None = None
    temperature: float | None = Field(None, gt=0)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0)
    seed: Seed = 0
    batch_size: int = Field(64, ge=1)


class EvalSuite(Strict):
    """How a front is traced: objectives (name -> objective spec), prompts, grid, reference point."""
    name: str
    objectives: dict[str, str]
    prompts: str = "world:eval_prompts"
    n_prompts: int | None = Field(None, ge=1)
    grid: int = Field(10, ge=1)
    reference_point: list[float]
    generation: Generation = Generation()
    samples_per_point: int = Field(3, ge=0)
    # what `moalign compare` trains on this suite: its base, and per method the recipe (a path in
    # the repository); unlisted methods use the world's recipes
    base: str = "world:base"
    recipes: dict[str, str] = {}

    @model_validator(mode="after")
    def _check(self):
        if len(self.objectives) < 1:
            raise ValueError("objectives: at least one is needed")
        if len(self.reference_point) != len(self.objectives):
            raise ValueError(f"reference_point has {len(self.reference_point)} values for "
                             f"{len(self.objectives)} objectives")
        return self


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise MoalignError(f"{path}: no such file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise MoalignError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise MoalignError(f"{path}: expected a mapping of keys to values at the top level")
    return data


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of `data` with each `a.b=value` set (value parsed as YAML)."""
    out = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise MoalignError(f"override {item!r}: expected key=value")
        node = out
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise MoalignError(f"override {item!r}: {part!r} is not a mapping")
            node = child
        node[parts[-1]] = _parse_value(raw)
    return out


def _parse_value(raw: str) -> Any:
    """YAML, plus the floats YAML 1.1 reads as strings (`1e-4`)."""
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    return value


def validate(model: type[M], data: dict[str, Any], where: str) -> M:
    """`model(**data)` with every validation problem in one line."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
            msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{loc}: {msg}")
        raise MoalignError(f"{where}: " + "; ".join(problems)) from None


def load_suite(path: str | os.PathLike, overrides: Sequence[str] = ()) -> EvalSuite:
    return validate(EvalSuite, apply_overrides(load_yaml(path), overrides), str(path))
