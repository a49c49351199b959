"""Bradley-Terry reward models (TRL RewardTrainer) on one objective's preference labels.

The papers' RL baselines (MORLHF, MaxMin-RLHF) optimise reward models learned from the same
preference data the direct methods (MODPO) see, not ground truth. This trains one per objective
from `pairwise_multi` (better_<objective>) or `pairwise` data; the output directory is an
AutoModelForSequenceClassification that recipes use as `hf:<dir>`. A held-out share of the pairs
gives the model's pair accuracy (in `reward_model.json`, with the recipe and timings).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import Field

from moalign.config import Seed, Strict


class Config(Strict):
    base_model: str = Field("world:base", description="backbone: `world:base`, a local HF directory, or a "
                                                      "hub id")
    data: str = Field("world:pairwise_multi", description="training pairs")
    format: Literal["pairwise_multi", "pairwise"] = Field("pairwise_multi", description="data format")
    objective: str | None = Field(None, description="which `better_<objective>` labels (required for "
                                                    "`pairwise_multi`); with `pairwise`, the scorer's name")
    columns: dict[str, str] = Field({}, description="column map, moalign name -> file column")
    heldout: float = Field(0.1, ge=0, lt=1, description="share of pairs kept out for the accuracy, in [0, 1)")
    epochs: float = Field(1.0, gt=0, description="training epochs")
    learning_rate: float = Field(5e-4, gt=0, description="learning rate")
    batch_size: int = Field(16, ge=1, description="pairs per device and step")
    seed: Seed = Field(0, description="split, head initialisation and training seed")
    out: str = Field("runs/rm", description="output directory when `--out` is not given")


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:
    import numpy as np

    from moalign.data import load_data, to_pairwise
    from moalign.errors import MoalignError
    from moalign.files import Stopwatch, atomic_dir
    from moalign.objectives import get_objective
    from moalign.training import base_path
    from moalign.training.reward_model import train_reward_model
    from moalign.world import resolve as world

    watch = Stopwatch()
    base = base_path(cfg.base_model)
    if cfg.format == "pairwise_multi":
        if not cfg.objective:
            raise MoalignError("reward_model: `objective` names the better_<objective> labels to learn")
        ds = to_pairwise(load_data(world(cfg.data), "pairwise_multi", objectives=[cfg.objective],
                                   columns=cfg.columns), cfg.objective)
    else:
        ds = load_data(world(cfg.data), "pairwise", columns=cfg.columns)
    pairs = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in ds]
    order = np.random.default_rng(cfg.seed).permutation(len(pairs))
    n_held = int(len(pairs) * cfg.heldout)
    held, train_pairs = [pairs[i] for i in order[:n_held]], [pairs[i] for i in order[n_held:]]
    with atomic_dir(out, overwrite) as tmp:
        train_reward_model(base, train_pairs, tmp, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                           batch_size=cfg.batch_size, seed=cfg.seed, progress=progress)
        seconds, accuracy = watch.seconds(), None
        if held:
            rm = get_objective(f"hf:{tmp}", cfg.objective or "reward")
            prompts = [p["prompt"] for p in held]
            margin = (rm.score(prompts, [p["chosen"] for p in held]) -
                      rm.score(prompts, [p["rejected"] for p in held]))
            accuracy = round(float(np.mean(margin > 0)), 4)
        (tmp / "reward_model.json").write_text(json.dumps(
            {"method": "reward_model", "base_model": base, "recipe": recipe or cfg.model_dump(),
             "metrics": {"train_seconds": seconds, "heldout_pairs": n_held,
                         "heldout_accuracy": accuracy}}, indent=1) + "\n")
    return out
