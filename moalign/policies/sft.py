"""Supervised fine-tuning with TRL's SFTTrainer: the reference policy the other methods start from,
and the inner loop of the rejection-sampling methods (RiC, DPA).

Trains on `sft` data (prompt, response) or on the chosen side of `pairwise` data, with the loss
on the response only. LoRA (peft) adapters are merged into the saved model, so the checkpoint is a
plain HF model with a `fixed` steering manifest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from moalign.config import Seed, Strict, refuse_objective_list
from moalign.training.lora import Lora
from moalign.world.scoring import OBJECTIVES


class Config(Strict):
    base_model: str = Field("world:base", description="model to fine-tune: `world:base`, a local HF "
                                                      "directory, or a hub id")
    data: str = Field("world:sft", description="training file")
    format: Literal["sft", "pairwise"] = Field("sft", description="`sft` trains on `response`, `pairwise` "
                                                                  "on `chosen`")
    columns: dict[str, str] = Field({}, description="column map, moalign name -> file column")
    objectives: dict[str, str] = Field({o: f"world:{o}" for o in OBJECTIVES},
                                       description="name -> objective spec, written to the manifest (a "
                                                   "fixed policy ignores them); an eval suite may only use "
                                                   "these names")
    epochs: float = Field(1.0, gt=0, description="training epochs")
    max_steps: int = Field(-1, description="step limit (-1: use `epochs`)")
    learning_rate: float = Field(5e-4, gt=0, description="learning rate, constant schedule")
    batch_size: int = Field(16, ge=1, description="examples per device and step")
    max_length: int = Field(256, ge=8, description="sequence length in tokens")
    lora: Lora | None = Field(None, description="LoRA adapter, merged into the saved weights; none: full "
                                                "fine-tuning")
    seed: Seed = Field(0, description="training seed")
    out: str = Field("runs/sft", description="output directory when `--out` is not given")

    @model_validator(mode="before")
    @classmethod
    def _old_spelling(cls, data):
        return refuse_objective_list(data, "{helpful: world:helpful, harmless: world:harmless}")


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:
    from moalign.data import load_data
    from moalign.files import Stopwatch, atomic_dir
    from moalign.steerable import Manifest
    from moalign.training import base_path
    from moalign.training.sft import train_sft
    from moalign.world import resolve as world

    watch = Stopwatch()
    base = base_path(cfg.base_model)
    ds = load_data(world(cfg.data), cfg.format, columns=cfg.columns)
    key = "response" if cfg.format == "sft" else "chosen"
    rows = [{"prompt": r["prompt"], "response": r[key]} for r in ds]
    with atomic_dir(out, overwrite) as tmp:
        train_sft(base, rows, tmp, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                      batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed, lora=cfg.lora,
                      max_steps=cfg.max_steps, progress=progress)
        Manifest(method="sft", objectives=list(cfg.objectives), steering={"kind": "fixed"}, base_model=base,
                 recipe=recipe or cfg.model_dump(), metrics={"train_seconds": watch.seconds(),
                                                             "examples": len(rows)}).write(tmp)
    return out
