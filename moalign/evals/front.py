"""Trace a steerable policy's front: for each preference, generate on the suite's prompts, score
every objective, average. The same seeded decoding at every point, so a policy that ignores its
preference yields one point repeated. Writes `front.json` (the README's "Fronts" schema) and a plot.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from moalign.config import EvalSuite
from moalign.errors import MoalignError
from moalign.evals.pareto import hypervolume, non_dominated
from moalign.objectives import get_objective
from moalign.preference import Preference, grid
from moalign.progress import stage, track
from moalign.steerable import SteerablePolicy

FORMAT_VERSION = 1


def suite_prompts(suite: EvalSuite) -> list:
    from moalign.data import load_data
    from moalign.world import resolve

    prompts = list(load_data(resolve(suite.prompts), "prompts")["prompt"])
    return prompts[:suite.n_prompts] if suite.n_prompts else prompts


def rollout(policy: SteerablePolicy, prompts: list, objectives: dict, preference=None, user=None,
            generation: dict | None = None) -> tuple[dict[str, float], list[str], int]:
    """Mean score per objective of the policy's answers, the answers, and their token count."""
    responses = policy.generate(prompts, preference=preference, user=user, **(generation or {}))
    scores = {name: float(np.mean(obj.score(prompts, responses))) for name, obj in objectives.items()}
    tok = policy.tokenizer
    tokens = sum(len(tok(r, add_special_tokens=False)["input_ids"]) for r in responses)
    return scores, responses, tokens


def steerability(points: list[dict], objectives: Sequence[str]) -> dict[str, float | None]:
    """Per objective, the Spearman correlation between its weight and its achieved score over the
    points (None where either is constant, e.g. a policy that ignores its preference)."""
    from scipy.stats import spearmanr

    out: dict[str, float | None] = {}
    for o in objectives:
        w = [p["preference"].get(o, 0.0) for p in points]
        s = [p["scores"][o] for p in points]
        rho = spearmanr(w, s).statistic if len(set(w)) > 1 and len(set(s)) > 1 else float("nan")
        out[o] = None if not np.isfinite(rho) else round(float(rho), 4)
    return out


def summarise(points: list[dict], objectives: Sequence[str], reference: Sequence[float]) -> dict:
    matrix = [[p["scores"][o] for o in objectives] for p in points]
    return {"pareto_indices": non_dominated(matrix), "hypervolume": hypervolume(matrix, reference),
            "steerability": steerability(points, objectives)}


def trace_front(policy: SteerablePolicy, suite: EvalSuite, *, method: str | None = None,
                preferences: Sequence[Preference] | None = None, search: str = "grid",
                budget: int | None = None, eval_path: str | None = None, progress: bool = True,
                cache: Path | None = None) -> dict:
    """The front of `policy` under `suite`, as a front.json dictionary: the suite's das-dennis grid,
    the given `preferences`, or an NSGA-II search (`search="nsga2"`) of `budget` evaluations.
    With `cache`, each evaluated point is kept there and reused by a later call (`trace_to`)."""
    from moalign.evals.pareto import nsga2_search

    names = list(suite.objectives)
    missing = [n for n in names if policy.objectives and n not in policy.objectives]
    if missing and policy.kind != "fixed":
        raise MoalignError(f"the eval suite's objectives {names} include {missing}, which this checkpoint "
                           f"cannot be steered on (its objectives: {policy.objectives})")
    objectives = {n: get_objective(spec, n) for n, spec in suite.objectives.items()}
    prompts = suite_prompts(suite)
    if not prompts:
        raise MoalignError(f"{suite.prompts}: no prompts to evaluate on")
    generation = suite.generation.model_dump()
    points, tokens, seconds = [], [0], [0.0]

    def evaluate(pref: Preference) -> dict[str, float]:
        wanted = {k: round(v, 6) for k, v in pref.as_dict().items()}
        kept = cache / f"{len(points):04d}.json" if cache else None
        record = json.loads(kept.read_text()) if kept and kept.is_file() else None
        if (record is None or record["point"]["preference"] != wanted) and policy.kind == "fixed" and points:
            # a fixed policy ignores its preference and decodes with the same seed: the same point
            record = {"point": {**points[0], "preference": wanted}, "tokens": 0, "seconds": 0.0}
        if record is None or record["point"]["preference"] != wanted:
            start = time.time()
            scores, responses, n = rollout(policy, prompts, objectives, pref.as_dict(), generation=generation)
            samples = [{"prompt": p, "response": r}
                       for p, r in zip(prompts[:suite.samples_per_point], responses)]
            point = {"preference": wanted, "scores": {k: round(v, 6) for k, v in scores.items()},
                     "n_prompts": len(prompts), "samples": samples}
            record = {"point": point, "tokens": n, "seconds": time.time() - start}
            if kept:
                kept.parent.mkdir(parents=True, exist_ok=True)
                kept.write_text(json.dumps(record) + "\n")
        tokens[0] += record["tokens"]
        seconds[0] += record["seconds"]
        points.append(record["point"])
        return record["point"]["scores"]  # rounded, as stored: a resumed search sees what the first one saw

    if search == "grid":
        prefs = list(preferences) if preferences is not None else grid(names, suite.grid)
        with stage("tracing front", total=len(prefs)) as shown:
            for pref in prefs:
                evaluate(pref)
                matrix = np.array([[p["scores"][n] for n in names] for p in points])
                shown.update(advance=1, HV=hypervolume(matrix, suite.reference_point))
    elif search == "nsga2":
        if not budget:
            raise MoalignError("--search nsga2 needs --budget N (the number of preferences to evaluate)")
        if budget < 4:
            raise MoalignError("--budget must be at least 4 for an NSGA-II search")
        bar = iter(track(range(budget), "searching front (NSGA-II)", enabled=progress))

        def evaluate_w(w):
            next(bar, None)
            scores = evaluate(Preference(dict(zip(names, w)), names))
            return [scores[n] for n in names]

        nsga2_search(evaluate_w, len(names), budget, seed=suite.generation.seed)
        for _ in bar:
            pass
    else:
        raise MoalignError(f"unknown front search {search!r} (known: grid, nsga2)")
    train_seconds = policy.manifest.metrics.get("train_seconds")
    return {"format_version": FORMAT_VERSION, "method": method or policy.manifest.method,
            "checkpoint": str(policy.path), "eval": eval_path or suite.name, "objectives": names,
            "reference_point": list(suite.reference_point), "search": search, "generation": generation,
            "points": points, **summarise(points, names, suite.reference_point),
            "compute": {"train_seconds": train_seconds, "eval_seconds": round(seconds[0], 2),
                        "generated_tokens": tokens[0]}}


def _write(front: dict, directory: Path) -> None:
    from moalign.evals.plot import plot_fronts
    (directory / "front.json").write_text(json.dumps(front, indent=1) + "\n")
    plot_fronts([front], directory / "front.png")


def write_front(front: dict, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """`out/front.json` and `out/front.png`, written atomically."""
    from moalign.files import atomic_dir

    with atomic_dir(out, overwrite) as tmp:
        _write(front, tmp)
    return Path(out).absolute() / "front.json"


def trace_to(out: str | os.PathLike, policy: SteerablePolicy, suite: EvalSuite, *, overwrite: bool = False,
             progress: bool = True, **kwargs) -> dict:
    """`trace_front` written to `out` (front.json, front.png). A trace that fails or is interrupted
    keeps its evaluated points, and the same call on the same checkpoint resumes from them."""
    import shutil

    from moalign.files import atomic_dir

    files = sorted(f for f in Path(policy.path).iterdir() if f.is_file())  # a retrained checkpoint differs
    key = {"checkpoint": [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files],
           "suite": suite.model_dump(), **kwargs}
    with atomic_dir(out, overwrite, resume=key) as tmp:
        front = trace_front(policy, suite, progress=progress, cache=tmp / "points", **kwargs)
        shutil.rmtree(tmp / "points", ignore_errors=True)
        _write(front, tmp)
    return front


def read_front(path: str | os.PathLike) -> dict:
    p = Path(path)
    if p.is_dir():
        p = p / "front.json"
    try:
        front = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MoalignError(f"{path}: not a readable front.json ({e})") from None
    missing = [k for k in ("objectives", "points", "method", "reference_point") if k not in front]
    if missing:
        raise MoalignError(f"{p}: not a front.json (missing {', '.join(missing)})")
    return front


def chord_gaps(front: dict) -> dict[str, dict[str, float]]:
    """Linear mode connectivity along a two-objective front traced from w = e_2 to w = e_1: for each
    objective, how far the interior points lie above (+) or below (-) the chord between the two
    end points' scores (the rewarded-soups paper's check). Mean and minimum gap per objective."""
    first = front["objectives"][0]
    points = sorted(front["points"], key=lambda p: p["preference"][first])
    ends = points[0], points[-1]
    if (len(front["objectives"]) != 2 or ends[0]["preference"][first] != 0 or
            ends[1]["preference"][first] != 1):
        raise MoalignError("chord gaps need a two-objective front that includes both end points")
    gaps: dict[str, dict[str, float]] = {}
    for o in front["objectives"]:
        diffs = [p["scores"][o] - ((1 - p["preference"][first]) * ends[0]["scores"][o]
                                   + p["preference"][first] * ends[1]["scores"][o]) for p in points[1:-1]]
        gaps[o] = {"mean": round(float(np.mean(diffs)), 4), "min": round(float(np.min(diffs)), 4)}
    return gaps
