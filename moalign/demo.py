"""`moalign demo`: the world, the base, every method that exists trained on it, their fronts on one
plot, and a summary table. Later methods join by adding a line to DEMO_METHODS."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import moalign

REPO = Path(moalign.__file__).resolve().parent.parent
SUITE = "evals/world.yaml"
# (name, recipe relative to the repository, overrides that keep the demo within minutes on 2 CPU
# cores); the base is traced first, untrained. The full recipes are what the README's results use.
DEMO_METHODS: list[tuple[str, str, list[str]]] = [
    ("sft", "policies/sft.yaml", []),
    ("soup", "soups/world.yaml", ["expert.steps=80"]),
    ("morlhf", "policies/morlhf.yaml", ["grid=2", "rl.steps=80"]),
    ("modpo", "policies/modpo.yaml", ["grid=2"]),
    ("ric", "policies/ric.yaml", []),
    ("dpa", "policies/dpa.yaml", ["rounds=3"]),
    ("clp", "policies/clp.yaml", ["rl.steps=160"]),
]


def _repo_file(rel: str) -> Path:
    from moalign.errors import MoalignError
    p = REPO / rel
    if not p.exists():
        raise MoalignError(f"{p}: the demo needs the repository's recipes (run it from a checkout)")
    return p


def run_demo(out: str | os.PathLike, seed: int = 0, overwrite: bool = False, progress: bool = True,
             console=None) -> dict:
    """Run the demo into `out`; return the summary (also written to out/summary.json)."""
    from moalign.config import load_suite
    from moalign.evals.front import trace_front, write_front
    from moalign.evals.plot import plot_fronts
    from moalign.files import check_out
    from moalign.policies import train_recipe
    from moalign.steerable import load_steerable
    from moalign.world import build_world
    from moalign.world.base import write_base

    say = console.print if console else (lambda *a, **k: None)
    out = Path(out).expanduser().absolute()
    check_out(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    suite_path = _repo_file(SUITE)
    suite = load_suite(suite_path)

    say(f"[bold]1/4[/] world (seed {seed}) -> {out / 'world'}")
    build_world(out / "world", seed)
    say("[bold]2/4[/] tiny base model (cached after the first run)")
    base = write_base(out / "base", seed, overwrite=True, progress=progress)

    checkpoints = {"base": base}
    for i, (name, recipe, overrides) in enumerate(DEMO_METHODS):
        say(f"[bold]3/4[/] train {name} ({i + 1}/{len(DEMO_METHODS)})")
        checkpoints[name] = train_recipe(_repo_file(recipe), [f"base_model={base}", f"seed={seed}", *overrides],
                                         out=str(out / "runs" / name), overwrite=True, progress=progress)

    say(f"[bold]4/4[/] fronts on {SUITE}")
    fronts = []
    for name, ckpt in checkpoints.items():
        front = trace_front(load_steerable(ckpt), suite, method=name, eval_path=SUITE, progress=progress)
        write_front(front, out / "fronts" / name, overwrite=True)
        fronts.append(front)
    png = plot_fronts(fronts, out / "fronts.png", title=f"moalign demo: {suite.name} (seed {seed})")

    rows = []
    for f in fronts:
        best = max(f["points"], key=lambda p: sum(p["scores"].values()))
        rows.append({"method": f["method"], "points": len(f["points"]),
                     "pareto_points": len(f["pareto_indices"]), "hypervolume": round(f["hypervolume"], 4),
                     "best_scores": best["scores"], "train_seconds": f["compute"]["train_seconds"],
                     "eval_seconds": f["compute"]["eval_seconds"]})
    summary = {"seed": seed, "suite": SUITE, "plot": str(png), "wall_seconds": round(time.time() - start, 1),
               "methods": rows}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
