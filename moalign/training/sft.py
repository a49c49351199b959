"""Supervised fine-tuning with TRL's SFTTrainer, the loss on the response only: the `sft` method,
and the inner loop of the rejection-sampling methods (RiC, DPA)."""
from __future__ import annotations

from pathlib import Path

from moalign.training.lora import Lora


def train_sft(model_path: str, rows: list[dict], out: Path, *, epochs: float, learning_rate: float,
              batch_size: int, max_length: int, seed: int, lora: Lora | None = None, max_steps: int = -1,
              progress: bool = True) -> float:
    """SFT `model_path` on rows of {prompt, response[, system]}; save model and tokenizer to `out`;
    seconds. Words of the system texts that the tokenizer cannot write are added to it first."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from moalign.conditioning import add_missing_tokens
    from moalign.errors import MoalignError
    from moalign.models import completion_text, load_causal_lm, load_tokenizer, render_prompt
    from moalign.training import seeded, shown, train_and_save, trainer_kwargs

    tok = load_tokenizer(model_path)
    model = load_causal_lm(model_path, train=True).train()
    if add_missing_tokens(tok, model, [r["system"] for r in rows if r.get("system")]) and lora:
        raise MoalignError(f"{model_path}: its tokenizer lacks words of the conditioning text; new "
                           "embeddings need full fine-tuning (drop `lora`)")
    data = Dataset.from_list([{"prompt": render_prompt(tok, r["prompt"], r.get("system")),
                               "completion": completion_text(tok, r["prompt"], r["response"],
                                                             r.get("system"))}
                              for r in rows])
    args = SFTConfig(num_train_epochs=epochs, max_steps=max_steps, per_device_train_batch_size=batch_size,
                     learning_rate=learning_rate, lr_scheduler_type="constant", max_length=max_length,
                     **trainer_kwargs(out / "_trainer", seed=seed))
    trainer = shown(seeded(SFTTrainer, seed, model=model, args=args, train_dataset=data,
                           processing_class=tok, peft_config=lora.peft() if lora else None), progress)
    return train_and_save(trainer, out, tok, merge_lora=lora is not None)
