"""`moalign compare SUITE --methods ...`: every method trained from the same base on the suite's
objectives, every front traced by the same protocol, one table and one plot.

Each method runs its registered recipe (`moalign.registry`) with the suite's objectives written in, and the
same RL budget rule: CLP's one run gets as many steps as the soup's experts together (150 per
objective), MORLHF and MODPO use a grid of 2 partitions with three objectives or more (6 runs). The table
gives hypervolume, hypervolume / MORLHF's, training seconds (and / MORLHF's), steerability per
objective, and whether the method's paper's headline claim (its registry entry) held here. Personalization
methods (maxmin, pal) train on the world's users and fill their own table from their metrics.

A run resumes: a method whose checkpoint in `out/runs/` is complete is not trained again (its
front is re-traced only if missing), so a crash loses at most the method it was in; `retrain`
starts over.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Sequence

import moalign
from moalign import registry
from moalign.errors import MoalignError

REPO = Path(moalign.__file__).resolve().parent.parent


def repo_file(rel: str) -> Path:
    p = REPO / rel
    if not p.exists():
        raise MoalignError(f"{p}: comparing needs the repository's recipes (run it from a checkout)")
    return p


def suite_overrides(method: str, objectives: dict[str, str]) -> list[str]:
    """Recipe overrides that put the suite's objectives into a method's recipe."""
    return registry.method(method).suite(objectives)


def _trained(ckpt: Path) -> bool:
    return (ckpt / "moalign.json").exists()


def run_compare(suite_path: str | os.PathLike, methods: Sequence[str], out: str | os.PathLike, *,
                base: str | None = None, seed: int = 0, extra: dict[str, list[str]] | None = None,
                retrain: bool = False, progress: bool = True, report_to: str | None = None,
                jobs: int = 1) -> dict:
    """Train (or reuse) each method, trace its front, write compare.json, compare.md, fronts.png and
    compare.html (the report)."""
    from moalign.config import load_suite
    from moalign.evals.front import trace_to
    from moalign.evals.plot import plot_fronts
    from moalign.evals.report import write_report
    from moalign.files import sharing
    from moalign.jobs import Training, train_all
    from moalign.policies import train_recipe
    from moalign.progress import say, stage
    from moalign.steerable import load_steerable
    from moalign.training import base_path

    known = registry.compared()
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise MoalignError(f"unknown method(s) {', '.join(unknown)} (known: {', '.join(known)})")
    suite = load_suite(suite_path)
    out = Path(out).expanduser().absolute()
    if out.exists() and not out.is_dir():
        raise MoalignError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    base = base_path(base or suite.base)
    start = time.time()
    checkpoints = {"base": Path(base)}
    if retrain:
        shutil.rmtree(out / "shared", ignore_errors=True)
    todo = []
    for i, method in enumerate(methods):
        ckpt = checkpoints[method] = out / "runs" / method
        if _trained(ckpt) and not retrain:
            say(f"{i + 1}/{len(methods)} {method}: reusing {ckpt}")
            continue
        overrides = [f"base_model={base}", f"seed={seed}", *suite_overrides(method, suite.objectives),
                     *(extra or {}).get(method, [])]
        recipe = repo_file(suite.recipes.get(method, registry.method(method).recipe))
        todo.append(Training(f"{i + 1}/{len(methods)} train {method}", str(recipe), tuple(overrides),
                             str(ckpt), report_to))
        (out / "fronts" / method / "front.json").unlink(missing_ok=True)

    def front_of(name: str) -> dict:
        path, ckpt = out / "fronts" / name / "front.json", checkpoints[name]
        if path.exists():  # the base's front is reused only if it was traced from the same base
            front = json.loads(path.read_text())
            if name != "base" or front.get("checkpoint") == str(ckpt):
                return front
        with stage(f"front of {name} on {suite.name}"):
            return trace_to(out / "fronts" / name, load_steerable(ckpt), suite, overwrite=True, method=name,
                            eval_path=str(suite_path), progress=progress)

    fronted = [name for name in checkpoints if name not in registry.compared("users")]
    if jobs > 1 and len(todo) > 1:  # side by side, each in its own process (moalign.jobs)
        todo = sorted(_after_reused(todo), key=_start_order)
        train_all(todo, jobs, out / "shared",
                  done=lambda job: (f"front HV {front_of(Path(job.out).name)['hypervolume']:.3f}"
                                    if Path(job.out).name in fronted else None))
    else:
        with sharing(out / "shared"):  # a training two methods ask for (a soup's expert) runs once
            for job in todo:
                with stage(job.label):
                    train_recipe(job.recipe, list(job.overrides), out=job.out, overwrite=True,
                                 progress=progress, report_to=report_to)
    fronts = [front_of(name) for name in fronted]
    png = (plot_fronts(fronts, out / "fronts.png", title=f"moalign compare: {suite.name} (seed {seed})")
           if fronts else None)
    users = {m: checkpoints[m] for m in methods if m in registry.compared("users")}
    summary = {"suite": str(suite_path), "objectives": list(suite.objectives), "seed": seed, "base": base,
               "date": time.strftime("%Y-%m-%d"), "plot": str(png) if png else None,
               "wall_seconds": round(time.time() - start, 1), "methods": table(fronts),
               "personalization": personalization(users)}
    md = markdown(summary)
    summary["report"] = str(write_report(out, md, fronts, png))
    (out / "compare.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "compare.md").write_text(md)
    return summary


def _start_order(job) -> tuple[bool, bool, bool]:
    """Longest first, as far as a recipe tells (side by side, the last to start bounds the wall
    time): a fixed policy (SFT: one short training) goes last, after a method that reuses another's
    trainings (the least of its own); RL methods, the slowest per step, go first. The demo on 2 cores
    (2026-12-02: CLP ~3:10, MODPO and DPA ~2:35, the soup ~2:20, RiC ~2:05, MORLHF ~1:15 after the
    soup, SFT ~25 s; when it was measured CLP took ~4 min): with MORLHF started third, DPA started
    last and ended the trainings; with MORLHF last, the trainings took 8:22 and 8:27 instead of 9:06
    and 8:49 (the two orders in turn, base cached).
    SFT (~20 s) fills the tail best; started third, it left the longer trainings to end last."""
    from moalign.config import load_yaml
    fixed = registry.method(Path(job.out).name).steering == "fixed"
    return fixed, bool(job.after), "rl" not in load_yaml(job.recipe)


def _after_reused(todo: list) -> list:
    """Each training that reuses another method's trainings (registry `reuses`: MORLHF's vertices
    are an RL soup's experts, MODPO's margin and plain end a DPO soup's) starts after that method:
    side by side, both would train them."""
    from dataclasses import replace

    from moalign.config import load_yaml
    by_method = {Path(job.out).name: job for job in todo}
    out = []
    for job in todo:
        reuse = registry.method(Path(job.out).name).reuses
        source = by_method.get(reuse[0]) if reuse else None
        out.append(replace(job, after=(source.label,)) if source and reuse[1] in load_yaml(source.recipe)
                   else job)
    return out


def table(fronts: list[dict]) -> list[dict]:
    """One row per front: HV, ratios to MORLHF (and CLP to the soup), compute, steerability, claim."""
    by = {f["method"]: f for f in fronts}
    rows = []
    for f in fronts:
        # the base's own training (the world base's SFT) is not a method's cost
        train = None if f["method"] == "base" else f["compute"].get("train_seconds")
        best = max(f["points"], key=lambda p: sum(p["scores"].values()))
        row = {"method": f["method"], "points": len(f["points"]), "pareto_points": len(f["pareto_indices"]),
               "hypervolume": round(f["hypervolume"], 4), "best_scores": best["scores"],
               "train_seconds": train, "eval_seconds": f["compute"].get("eval_seconds"),
               "steerability": f.get("steerability", {})}
        for ref in ("morlhf", "soup"):
            if ref in by and ref != f["method"]:
                row[f"hv_vs_{ref}"] = (round(f["hypervolume"] / by[ref]["hypervolume"], 3)
                                       if by[ref]["hypervolume"] else None)
        ref_train = by.get("morlhf", {}).get("compute", {}).get("train_seconds")
        if train is not None and ref_train and f["method"] != "morlhf":
            row["train_vs_morlhf"] = round(train / ref_train, 3)
        claim = registry.METHODS[f["method"]].claim if f["method"] in registry.METHODS else None
        if claim:
            text, check = claim
            row["claim"], row["claim_held"] = text, check(row)
        rows.append(row)
    return rows


def personalization(checkpoints: dict[str, Path]) -> dict:
    """The metrics MaxMin and PAL record about users and groups (see their modules)."""
    out = {}
    for name, ckpt in checkpoints.items():
        metrics = json.loads((ckpt / f"{name}.json").read_text())
        metrics.pop("em", None)
        out[name] = metrics
    return out


def markdown(summary: dict) -> str:
    objectives = summary["objectives"]
    lines = [f"# moalign compare: {summary['suite']} (seed {summary['seed']}, {summary['date']})", "",
             "| method | HV | HV / MORLHF | train s | train / MORLHF | steerability (" +
             ", ".join(objectives) + ") | paper's claim | held |", "|---|---|---|---|---|---|---|---|"]
    fmt = lambda v, d=3: "" if v is None else (f"{v:.{d}f}" if isinstance(v, float) else str(v))  # noqa: E731
    for r in summary["methods"]:
        steer = " / ".join(fmt(r["steerability"].get(o), 2) or "-" for o in objectives)
        held = {True: "yes", False: "**no**", None: "n/a"}[r.get("claim_held")] if "claim" in r else ""
        lines.append(f"| {r['method']} | {fmt(r['hypervolume'])} | {fmt(r.get('hv_vs_morlhf'), 2)} | "
                     f"{fmt(r['train_seconds'], 0)} | {fmt(r.get('train_vs_morlhf'), 2)} | {steer} | "
                     f"{r.get('claim', '')} | {held} |")
    p = summary.get("personalization") or {}
    if "maxmin" in p:
        m, gt = p["maxmin"], p["maxmin"].get("ground_truth", {})
        lines += ["", "| MaxMin-RLHF | value |", "|---|---|",
                  f"| EM cluster purity | {fmt(m.get('purity'), 2)} |",
                  f"| held-out accuracy, group RMs / pooled RM (minority users) | "
                  f"{fmt(m.get('heldout_accuracy'))} / "
                  f"{fmt(m.get('heldout_accuracy_pooled'))} ({fmt(m.get('minority_accuracy'))} / "
                  f"{fmt(m.get('minority_accuracy_pooled'))}) |"]
        for name, groups in gt.items():
            lines.append(f"| true group rewards, {name} | " +
                         ", ".join(f"{g} {v:.3f}" for g, v in groups.items()) + " |")
    if "pal" in p:
        m = p["pal"]
        lines += ["", "| PAL | value |", "|---|---|"]
        for key in ("seen_accuracy", "seen_vs_oracle", "new_user_accuracy", "new_user_vs_oracle",
                    "single_rm_accuracy", "minority_accuracy", "minority_single_rm_accuracy"):
            if m.get(key) is not None:
                lines.append(f"| {key.replace('_', ' ')} | {fmt(m[key])} |")
    return "\n".join(lines) + "\n"
