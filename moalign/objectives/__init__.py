"""Objectives: reward sources behind one interface, so that training, evaluation and serving can
score text without caring where a score comes from.

An `Objective` maps a batch of (prompt, response) pairs to one float per pair, higher is better.
A spec string picks the source by its prefix:

- `world:<name>`                              exact programmatic score of the synthetic world
- `hf:<dir>` or `hf:<dir>#<label>`            a sequence-classification model's logit for a label
- `implicit:<dir>[?ref=<dir>&beta=<float>]`   a DPO model's implicit reward beta * log pi/pi_ref
- `user:<dir>#<user id>`                      a user's reward from a user model (MaxMin groups, PAL)
- `text:<pole>`                               a real text's readability, length or sentiment (P-Soups)
- `py:<module>:<function>`                    your own scorer, (prompts, responses) -> scores in [0, 1]

The registry maps each prefix to "module:Class"; a source's module (and its heavy dependencies)
is imported only when a spec uses it.
"""
from __future__ import annotations

import importlib
from typing import ClassVar, Sequence

import numpy as np

from moalign.errors import MoalignError
from moalign.models import Prompt

REGISTRY = {
    "world": "moalign.objectives.world:WorldObjective",
    "hf": "moalign.objectives.hf:HFObjective",
    "implicit": "moalign.objectives.implicit:ImplicitObjective",
    "user": "moalign.objectives.user:UserObjective",
    "text": "moalign.objectives.text:TextObjective",
    "py": "moalign.objectives.py:PyObjective",
}


class Objective:
    """A batched scorer of (prompt, response) pairs; every objective is maximised."""

    higher_is_better: ClassVar[bool] = True

    def __init__(self, spec: str, name: str):
        self.spec = spec
        self.name = name

    def score(self, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        """One float64 score per pair, in order."""
        prompts, responses = list(prompts), list(responses)
        if len(prompts) != len(responses):
            raise MoalignError(f"{self.spec}: {len(prompts)} prompts but {len(responses)} responses")
        if not prompts:
            return np.zeros(0, dtype=np.float64)
        out = np.asarray(self._score(prompts, responses), dtype=np.float64)
        assert out.shape == (len(prompts),), (self.spec, out.shape)
        return out

    def _score(self, prompts: list[Prompt], responses: list[str]) -> np.ndarray:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, spec={self.spec!r})"


def get_objective(spec: str, name: str | None = None) -> Objective:
    """The objective a spec names, e.g. `world:helpful`, `hf:runs/rm#1`, `implicit:runs/dpo`."""
    prefix, sep, target = spec.partition(":")
    known = ", ".join(f"{p}:" for p in REGISTRY)
    if not sep or prefix not in REGISTRY:
        raise MoalignError(f"objective {spec!r}: unknown source; expected a spec starting with one of "
                           f"{known}")
    if not target:
        raise MoalignError(f"objective {spec!r}: nothing after {prefix!r}")
    module, cls = REGISTRY[prefix].split(":")
    return getattr(importlib.import_module(module), cls)(target, spec=spec, name=name)


__all__ = ["Objective", "REGISTRY", "get_objective"]
