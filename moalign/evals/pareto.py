"""Pareto maths through pymoo, the only module that imports it.

moalign's scores are "higher is better"; pymoo minimises. Everything is negated here, nowhere else:
callers pass maximisation scores and a reference point that lower-bounds them.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting
from pymoo.util.ref_dirs import get_reference_directions


def das_dennis(n_objectives: int, n_partitions: int) -> np.ndarray:
    """Points of the simplex whose coordinates are multiples of 1/n_partitions, one row each."""
    if n_objectives < 1 or n_partitions < 1:
        raise ValueError("das_dennis needs n_objectives >= 1 and n_partitions >= 1")
    if n_objectives == 1:
        return np.ones((1, 1))
    return get_reference_directions("das-dennis", n_objectives, n_partitions=n_partitions)


def _as_matrix(points: Sequence[Sequence[float]]) -> np.ndarray:
    m = np.asarray(points, dtype=np.float64)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D array of points, got shape {m.shape}")
    return m


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points no other point dominates (maximisation), in input order.
    Duplicates of a non-dominated point are all kept."""
    m = _as_matrix(points)
    if len(m) == 0:
        return []
    front = NonDominatedSorting().do(-m, only_non_dominated_front=True)
    return sorted(int(i) for i in front)


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float]) -> float:
    """Volume dominated by `points` and bounded below by `reference` (maximisation).
    Points that do not strictly exceed the reference on every objective add nothing."""
    m = _as_matrix(points)
    ref = np.asarray(reference, dtype=np.float64)
    if m.shape[1] != len(ref):
        raise ValueError(f"points have {m.shape[1]} objectives, reference has {len(ref)}")
    m = m[np.all(m > ref, axis=1)]
    if len(m) == 0:
        return 0.0
    return float(HV(ref_point=-ref)(-m))


def nsga2_search(evaluate: Callable[[np.ndarray], np.ndarray], n_objectives: int, budget: int,
                 seed: int = 0) -> None:
    """Search the preference simplex with NSGA-II for weights whose outcomes are non-dominated.

    `evaluate(w)` gets a point of the simplex and returns its (maximised) scores; it is called at
    most `budget` times (whole generations: pop_size * n_gen <= budget). The caller records what it
    evaluates; pymoo sees x in [0, 1]^n, mapped to w = x / sum(x).
    """
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.problem import ElementwiseProblem
    from pymoo.optimize import minimize

    if budget < 4:
        raise ValueError("an NSGA-II search needs a budget of at least 4 evaluations")

    class Simplex(ElementwiseProblem):
        def __init__(self):
            super().__init__(n_var=n_objectives, n_obj=n_objectives, xl=0.0, xu=1.0)

        def _evaluate(self, x, out, *args, **kwargs):
            total = float(np.sum(x))
            w = x / total if total > 0 else np.full(n_objectives, 1.0 / n_objectives)
            out["F"] = -np.asarray(evaluate(w), dtype=np.float64)

    pop_size = max(4, budget // 4)
    # start from a das-dennis grid (corners and spread included), filled up with random points
    partitions = 1
    while len(das_dennis(n_objectives, partitions + 1)) <= pop_size:
        partitions += 1
    start = das_dennis(n_objectives, partitions)
    rng = np.random.default_rng(seed)
    start = np.vstack([start, rng.random((pop_size - len(start), n_objectives))])
    minimize(Simplex(), NSGA2(pop_size=pop_size, sampling=start), ("n_gen", budget // pop_size), seed=seed,
             verbose=False)
