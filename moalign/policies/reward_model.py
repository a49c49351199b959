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
    base_model: str = "world:base"
    data: str = "world:pairwise_multi"
    format: Literal["pairwise_multi", "pairwise"] = "pairwise_multi"
    objective: str | None = None  # for pairwise_multi: which better_<objective> labels
    columns: dict[str, str] = {}
    heldout: float = Field(0.1, ge=0, lt=1)
    epochs: float = Field(1.0, gt=0)
    learning_rate: float = Field(5e-4, gt=0)
    batch_size: int = Field(16, ge=1)
    seed: Seed = 0
    out: str = "runs/rm"


def fit(base: str, pairs: list[dict], out: Path, *, epochs: float, learning_rate: float, batch_size: int,
        seed: int, progress: bool) -> float:
    """Train a reward model on {prompt, chosen, rejected} pairs; save it to `out`; seconds."""
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from moalign.models import load_tokenizer, render_prompt, resolve
    from moalign.training import quiet, train_and_save, trainer_kwargs

    import torch

    tok = load_tokenizer(base)
    torch.manual_seed(seed)  # the new score head is initialised from the global generator
    model = AutoModelForSequenceClassification.from_pretrained(resolve(base), num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    data = Dataset.from_list([{"prompt": render_prompt(tok, p["prompt"]), "chosen": " " + p["chosen"],
                               "rejected": " " + p["rejected"]} for p in pairs])
    args = RewardConfig(num_train_epochs=epochs, learning_rate=learning_rate, per_device_train_batch_size=batch_size,
                        **trainer_kwargs(out / "_trainer", seed=seed, progress=progress))
    trainer = quiet(RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tok), progress)
    return train_and_save(trainer, out, tok)


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:
    import numpy as np

    from moalign.data import load_data, to_pairwise
    from moalign.errors import MoalignError
    from moalign.files import Stopwatch, atomic_dir
    from moalign.objectives import get_objective
    from moalign.training import base_path
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
        fit(base, train_pairs, tmp, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
            batch_size=cfg.batch_size, seed=cfg.seed, progress=progress)
        seconds, accuracy = watch.seconds(), None
        if held:
            rm = get_objective(f"hf:{tmp}", cfg.objective or "reward")
            prompts = [p["prompt"] for p in held]
            margin = rm.score(prompts, [p["chosen"] for p in held]) - rm.score(prompts, [p["rejected"] for p in held])
            accuracy = round(float(np.mean(margin > 0)), 4)
        (tmp / "reward_model.json").write_text(json.dumps(
            {"method": "reward_model", "base_model": base, "recipe": recipe or cfg.model_dump(),
             "metrics": {"train_seconds": seconds, "heldout_pairs": n_held,
                         "heldout_accuracy": accuracy}}, indent=1) + "\n")
    return out
