"""`moalign demo`: the world, the base, every method trained on it with settings cut to stay within
minutes on 2 CPU cores, their fronts on one plot and a summary table: `moalign compare` on
evals/world.yaml with each registered method's demo overrides (`moalign.registry`). The full
recipes are what the README's results use."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

SUITE = "evals/world.yaml"


def run_demo(out: str | os.PathLike, seed: int = 0, overwrite: bool = False, progress: bool = True,
             jobs: int = 1) -> dict:
    """Run the demo into `out`; return the summary (also written to out/summary.json)."""
    from moalign.compare import repo_file, run_compare
    from moalign.files import check_out
    from moalign.progress import stage
    from moalign.registry import demo_methods
    from moalign.world import build_world
    from moalign.world.base import write_base

    out = Path(out).expanduser().absolute()
    check_out(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    with stage(f"world (seed {seed}) -> {out / 'world'}"):
        build_world(out / "world", seed)
    with stage(f"tiny base model -> {out / 'base'}"):
        base = write_base(out / "base", seed, overwrite=True, progress=progress)
    methods = demo_methods()
    summary = run_compare(repo_file(SUITE), list(methods), out, base=str(base), seed=seed,
                          extra=methods, retrain=True, progress=progress, jobs=jobs)
    summary = {"seed": seed, "suite": SUITE, "plot": summary["plot"], "report": summary["report"],
               "wall_seconds": round(time.time() - start, 1), "methods": summary["methods"]}
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary
