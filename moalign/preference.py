"""Preference: named non-negative weights over objectives, normalised to sum to one."""
from __future__ import annotations

import math
from typing import Mapping, Sequence, Union

import numpy as np

from moalign.errors import MoalignError

PreferenceLike = Union["Preference", Mapping[str, float], Sequence[float], str]


class Preference:
    """Weights on the simplex over `objectives` (in that order). Immutable and hashable."""

    __slots__ = ("objectives", "weights")

    def __init__(self, weights: Mapping[str, float], objectives: Sequence[str]):
        objectives = tuple(objectives)
        if not objectives:
            raise MoalignError("preference: no objectives to weigh")
        unknown = [k for k in weights if k not in objectives]
        if unknown:
            raise MoalignError(f"preference: unknown objective {unknown[0]!r} "
                               f"(known: {', '.join(objectives)})")
        values = []
        for name in objectives:
            raw = weights.get(name, 0.0)
            try:
                v = float(raw)
            except (TypeError, ValueError):
                raise MoalignError(f"preference: weight for {name!r} is not a number ({raw!r})") from None
            if not math.isfinite(v):
                raise MoalignError(f"preference: weight for {name!r} is not finite ({raw!r})")
            if v < 0:
                raise MoalignError(f"preference: weight for {name!r} is negative ({v:g})")
            values.append(v)
        total = sum(values)
        if total <= 0:
            raise MoalignError("preference: all weights are zero")
        self.objectives = objectives
        self.weights = np.array(values, dtype=np.float64) / total

    @classmethod
    def parse(cls, spec: PreferenceLike, objectives: Sequence[str] | None = None) -> "Preference":
        """From a Preference, a dict, a list in objective order, or 'helpful=0.7,harmless=0.3'.
        With `objectives` None, the names are the ones the spec gives."""
        if isinstance(spec, Preference):
            return cls(spec.as_dict(), objectives or spec.objectives)
        if isinstance(spec, Mapping):
            return cls(spec, objectives or list(spec))
        if isinstance(spec, str):
            parts = [p.strip() for p in spec.split(",") if p.strip()]
            if parts and all("=" not in p for p in parts):
                for part in parts:
                    try:
                        float(part)
                    except ValueError:
                        raise MoalignError(f"preference: expected name=weight, got {part!r}") from None
                if objectives is None:
                    raise MoalignError("preference: name the objectives (helpful=0.7,harmless=0.3)")
                return cls.parse(parts, objectives)
            weights = {}
            for part in parts:
                name, sep, value = part.partition("=")
                if not sep:
                    raise MoalignError(f"preference: expected name=weight, got {part!r}")
                weights[name.strip()] = value.strip()
            return cls(weights, objectives or list(weights))
        if objectives is None:
            raise MoalignError("preference: a list of weights needs the objectives' names")
        values = list(spec)
        if len(values) != len(objectives):
            raise MoalignError(f"preference: {len(values)} weights for {len(objectives)} objectives "
                               f"({', '.join(objectives)})")
        return cls(dict(zip(objectives, values)), objectives)

    def as_dict(self) -> dict[str, float]:
        return {o: float(w) for o, w in zip(self.objectives, self.weights)}

    def __getitem__(self, name: str) -> float:
        return float(self.weights[self.objectives.index(name)])

    def key(self, digits: int = 6) -> tuple:
        """A hashable identity, rounded so that float noise does not split caches."""
        return self.objectives, tuple(round(float(w), digits) for w in self.weights)

    def __eq__(self, other) -> bool:
        return isinstance(other, Preference) and self.key() == other.key()

    def __hash__(self) -> int:
        return hash(self.key())

    def __repr__(self) -> str:
        return ",".join(f"{o}={w:.3g}" for o, w in zip(self.objectives, self.weights))


def grid(objectives: Sequence[str], n_partitions: int) -> list[Preference]:
    """The das-dennis grid: every point of the simplex with coordinates in multiples of 1/n."""
    from moalign.evals.pareto import das_dennis
    return [Preference(dict(zip(objectives, row)), objectives)
            for row in das_dennis(len(objectives), n_partitions)]


def sample(objectives: Sequence[str], n: int, seed: int = 0, alpha: float = 1.0) -> list[Preference]:
    """`n` preferences drawn from a symmetric Dirichlet(alpha)."""
    rows = np.random.default_rng(seed).dirichlet(np.full(len(objectives), alpha), size=n)
    return [Preference(dict(zip(objectives, row)), objectives) for row in rows]
