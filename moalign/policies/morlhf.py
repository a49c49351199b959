"""MORLHF: the baseline every multi-objective paper compares against.

For each preference w of a das-dennis grid, RL from the same base on the scalarised reward
sum_i w_i r_i(x, y) with KL to the base (TRL's GRPO/RLOO with `reward_weights`): one policy per
point, so the front costs one RL run per point. The checkpoint is a steerable front: a preference
between the trained points is served by interpolating the two neighbouring policies in weight
space (they share the init), or by the nearest policy with three objectives or more
(`InterpolationPolicy`).

Deviations from the RiC repository's MORLHF: GRPO instead of PPO; the weighted sum is not divided
by the sum of weights (the grid is on the simplex, so the sum is 1).
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from moalign.config import Seed, Strict
from moalign.policies.sft import Lora
from moalign.soups.experts import RL, train_rl


class Config(Strict):
    base_model: str = "world:base"
    objectives: dict[str, str] = Field(min_length=2)  # name -> objective spec
    grid: int = Field(4, ge=1)  # das-dennis partitions: grid + 1 policies for two objectives
    rl: RL = RL()
    lora: Lora | None = None
    seed: Seed = 0
    out: str = "runs/morlhf"


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:
    from moalign.files import Stopwatch, atomic_dir, step
    from moalign.preference import grid
    from moalign.soups.soup import write_manifest
    from moalign.training import base_path

    watch = Stopwatch()
    base = base_path(cfg.base_model)
    names = list(cfg.objectives)
    prefs = grid(names, cfg.grid)
    anchors, seconds = [], []
    with atomic_dir(out, overwrite, resume=recipe or cfg.model_dump()) as tmp:
        for i, pref in enumerate(prefs):
            if progress:
                print(f"MORLHF point {i + 1}/{len(prefs)}: {pref}")
            rel = f"points/{i:02d}"
            seconds.append(step(tmp / rel, lambda: train_rl(base, cfg.objectives, list(pref.weights), cfg.rl, tmp / rel,
                                                            lora=cfg.lora, seed=cfg.seed, progress=progress),
                                 watch))
            anchors.append({"preference": pref.as_dict(), "path": rel})
        write_manifest(tmp, method="morlhf", objectives=names, base=base, anchors=anchors, tokenizer=anchors[0]["path"],
                       semantics="lora-cat" if cfg.lora else "full", recipe=recipe or cfg.model_dump(),
                       metrics={"train_seconds": watch.seconds(),
                                "point_seconds": [round(s, 2) for s in seconds]})
    return out
