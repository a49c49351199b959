"""Supervised fine-tuning with TRL's SFTTrainer: the reference policy the other methods start from,
and the inner loop of the rejection-sampling methods (RiC, DPA).

Trains on `sft` data (prompt, response) or on the chosen side of `pairwise` data, with the loss
on the response only. LoRA (peft) adapters are merged into the saved model, so the checkpoint is a
plain HF model with a `fixed` steering manifest.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from moalign.config import Seed, Strict
from moalign.world.scoring import OBJECTIVES


class Lora(Strict):
    r: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str = "all-linear"

    def peft(self):
        from peft import LoraConfig
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=self.target_modules, task_type="CAUSAL_LM")


class Config(Strict):
    base_model: str = "world:base"
    data: str = "world:sft"
    format: Literal["sft", "pairwise"] = "sft"
    columns: dict[str, str] = {}
    objectives: list[str] = list(OBJECTIVES)
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(5e-4, gt=0)
    batch_size: int = Field(16, ge=1)
    max_length: int = Field(256, ge=8)
    lora: Lora | None = None
    seed: Seed = 0
    out: str = "runs/sft"


def fit(model_path: str, rows: list[dict], out: Path, *, epochs: float, learning_rate: float,
        batch_size: int, max_length: int, seed: int, lora: Lora | None = None, max_steps: int = -1,
        progress: bool = True) -> float:
    """SFT `model_path` on rows of {prompt, response[, system]}; save model and tokenizer to `out`;
    seconds. Words of the system texts that the tokenizer cannot write are added to it first."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from moalign.conditioning import add_missing_tokens
    from moalign.errors import MoalignError
    from moalign.models import completion_text, load_causal_lm, load_tokenizer, render_prompt
    from moalign.training import quiet, seeded, train_and_save, trainer_kwargs

    tok = load_tokenizer(model_path)
    model = load_causal_lm(model_path, train=True).train()
    if add_missing_tokens(tok, model, [r["system"] for r in rows if r.get("system")]) and lora:
        raise MoalignError(f"{model_path}: its tokenizer lacks words of the conditioning text; new "
                           "embeddings need full fine-tuning (drop `lora`)")
    data = Dataset.from_list([{"prompt": render_prompt(tok, r["prompt"], r.get("system")),
                               "completion": completion_text(tok, r["prompt"], r["response"], r.get("system"))}
                              for r in rows])
    args = SFTConfig(num_train_epochs=epochs, max_steps=max_steps, per_device_train_batch_size=batch_size,
                     learning_rate=learning_rate, lr_scheduler_type="constant", max_length=max_length,
                     **trainer_kwargs(out / "_trainer", seed=seed, progress=progress))
    trainer = quiet(seeded(SFTTrainer, seed, model=model, args=args, train_dataset=data, processing_class=tok,
                           peft_config=lora.peft() if lora else None), progress)
    return train_and_save(trainer, out, tok, merge_lora=lora is not None)


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:
    from moalign.data import load_data
    from moalign.files import Stopwatch, atomic_dir
    from moalign.steerable import Manifest
    from moalign.training import base_path
    from moalign.world import resolve as world

    watch = Stopwatch()
    base = base_path(cfg.base_model)
    ds = load_data(world(cfg.data), cfg.format, columns=cfg.columns)
    key = "response" if cfg.format == "sft" else "chosen"
    rows = [{"prompt": r["prompt"], "response": r[key]} for r in ds]
    with atomic_dir(out, overwrite) as tmp:
        fit(base, rows, tmp, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                      batch_size=cfg.batch_size, max_length=cfg.max_length, seed=cfg.seed, lora=cfg.lora,
                      max_steps=cfg.max_steps, progress=progress)
        Manifest(method="sft", objectives=cfg.objectives, steering={"kind": "fixed"}, base_model=base,
                 recipe=recipe or cfg.model_dump(), metrics={"train_seconds": watch.seconds(),
                                                             "examples": len(rows)}).write(tmp)
    return out
