"""DPO on one objective's pairs, through TRL: its labels in `pairwise_multi` data (chosen/rejected
by better_<objective>), or a `pairwise` file of its own (`data: {helpful: FILE, harmless: FILE}`).
Full fine-tuning or LoRA (the adapter is saved as is). Returns the training seconds."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Union

from pydantic import Field

from moalign.config import Strict
from moalign.training.lora import Lora


class DPO(Strict):
    algorithm: Literal["dpo"] = Field("dpo", description="always `dpo` (in a soup, it picks DPO experts)")
    data: Union[str, dict[str, str]] = Field(
        "world:pairwise_multi", description="a `pairwise_multi` file with `better_<objective>` labels, "
                                            "or objective -> `pairwise` file")
    columns: dict[str, str] = Field({}, description="column map for `data`, moalign name -> file column")
    epochs: float = Field(1.0, gt=0, description="training epochs")
    max_steps: int = Field(-1, description="step limit (-1: use `epochs`)")
    learning_rate: float = Field(5e-4, gt=0, description="learning rate, constant schedule")
    beta: float = Field(0.1, gt=0, description="DPO beta: strength of the implicit KL to the reference")
    batch_size: int = Field(16, ge=1, description="pairs per device and step")


def dpo_pairs(cfg: DPO, objectives: list[str]) -> dict[str, list[dict]]:
    """Each objective's pairs from the DPO data, every file and label column checked."""
    from moalign.data.pairs import objective_pairs

    data = cfg.data if isinstance(cfg.data, str) else {o: cfg.data[o] for o in objectives if o in cfg.data}
    return objective_pairs(data, objectives, cfg.columns)


def dpo_step(out: Path, base: str, objective: str, cfg: DPO, pairs: list[dict], *, lora: Lora | None,
             seed: int, progress: bool, watch=None) -> float:
    """`train_dpo` on `pairs` into `out` as a `moalign.files.step` (kept across a resumed run;
    inside `sharing`, trained once for every method that asks for it), keyed by what it trains on:
    the pairs themselves, not the file they came from."""
    from moalign.files import share_key, step
    key = share_key("dpo", base=str(base), dpo=cfg.model_dump(exclude={"data", "columns"}), pairs=pairs,
                    lora=lora.model_dump() if lora else None, seed=seed)
    return step(out, lambda: train_dpo(base, objective, cfg, out, lora=lora, seed=seed, progress=progress,
                                       pairs=pairs), watch, share=key)


def train_dpo(base: str, objective: str, cfg: DPO, out: Path, *, lora: Lora | None = None, seed: int = 0,
              progress: bool = True, pairs: list[dict] | None = None) -> float:
    """DPO on `objective`'s pairs (`pairs`, or read from `cfg.data`)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from moalign.models import completion_text, load_causal_lm, load_tokenizer, render_prompt
    from moalign.training import seeded, shown, train_and_save, trainer_kwargs

    tok = load_tokenizer(base)
    model = load_causal_lm(base, train=True).train()
    pairs = dpo_pairs(cfg, [objective])[objective] if pairs is None else pairs
    data = Dataset.from_list([{"prompt": render_prompt(tok, r["prompt"]),
                               "chosen": completion_text(tok, r["prompt"], r["chosen"]),
                               "rejected": completion_text(tok, r["prompt"], r["rejected"])} for r in pairs])
    args = DPOConfig(num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
                     beta=cfg.beta, per_device_train_batch_size=cfg.batch_size, lr_scheduler_type="constant",
                     **trainer_kwargs(out / "_trainer", seed=seed))
    trainer = shown(seeded(DPOTrainer, seed, model=model, args=args, train_dataset=data, processing_class=tok,
                           peft_config=lora.peft() if lora else None), progress)
    return train_and_save(trainer, out, tok)
