"""MORLHF: the baseline every multi-objective paper compares against.

For each preference w of a das-dennis grid, RL from the same base on the scalarised reward
sum_i w_i r_i(x, y) with KL to the base (TRL's GRPO/RLOO with `reward_weights`): one policy per
point, so the front costs one RL run per point. The checkpoint is a steerable front: a preference
between the trained points is served by interpolating the two neighbouring policies in weight
space (they share the init), or by the nearest policy with three objectives or more
(`InterpolationPolicy`). The points at the simplex's vertices are the soup's experts (RL on one
objective), and `compare` trains them once for both.

Deviations from the RiC repository's MORLHF: GRPO instead of PPO; the weighted sum is not divided
by the sum of weights (the grid is on the simplex, so the sum is 1).
"""
from __future__ import annotations

from pathlib import Path

from pydantic import Field

from moalign.config import Seed, Strict
from moalign.training.lora import Lora
from moalign.training.rl import RL, rl_step


class Config(Strict):
    base_model: str = Field("world:base", description="init and KL reference: `world:base`, a local HF "
                                                      "directory, or a hub id")
    objectives: dict[str, str] = Field(min_length=2, description="name -> objective spec (the rewards r_i), "
                                                                 "at least 2")
    grid: int = Field(4, ge=1, description="das-dennis partitions: grid + 1 policies for two objectives, "
                                           "(grid + 1)(grid + 2) / 2 for three")
    rl: RL = Field(RL(), description="the RL run at each grid point")
    lora: Lora | None = Field(None, description="LoRA adapters instead of full fine-tuning (mixed as "
                                                "merged weights)")
    seed: Seed = Field(0, description="training seed, the same for every point")
    out: str = Field("runs/morlhf", description="output directory when `--out` is not given")


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:
    from moalign.files import Stopwatch, atomic_dir
    from moalign.preference import grid
    from moalign.progress import stage
    from moalign.training import base_path
    from moalign.training.interpolation import write_manifest

    watch = Stopwatch()
    base = base_path(cfg.base_model)
    names = list(cfg.objectives)
    prefs = grid(names, cfg.grid)
    anchors, seconds = [], []
    with atomic_dir(out, overwrite, resume=recipe or cfg.model_dump()) as tmp:
        for i, pref in enumerate(prefs):
            rel = f"points/{i:02d}"
            with stage(f"point {i + 1}/{len(prefs)}: {pref}"):
                seconds.append(rl_step(tmp / rel, base, cfg.objectives, list(pref.weights), cfg.rl,
                                       lora=cfg.lora, seed=cfg.seed, progress=progress, watch=watch))
            anchors.append({"preference": pref.as_dict(), "path": rel})
        write_manifest(tmp, method="morlhf", objectives=names, base=base, anchors=anchors,
                       tokenizer=anchors[0]["path"], semantics="lora-cat" if cfg.lora else "full",
                       recipe=recipe or cfg.model_dump(),
                       metrics={"train_seconds": watch.seconds(),
                                "point_seconds": [round(s, 2) for s in seconds]})
    return out
