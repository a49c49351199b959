"""A Bradley-Terry reward model (TRL RewardTrainer) on {prompt, chosen, rejected} pairs: the
`reward_model` method, and MODPO's margin models when its recipe asks for them."""
from __future__ import annotations

from pathlib import Path


def train_reward_model(base: str, pairs: list[dict], out: Path, *, epochs: float, learning_rate: float,
                       batch_size: int, seed: int, progress: bool) -> float:
    """Train a reward model on {prompt, chosen, rejected} pairs; save it to `out`; seconds."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig, RewardTrainer

    from moalign.models import load_tokenizer, render_prompt, resolve
    from moalign.training import shown, train_and_save, trainer_kwargs

    tok = load_tokenizer(base)
    torch.manual_seed(seed)  # the new score head is initialised from the global generator
    model = AutoModelForSequenceClassification.from_pretrained(resolve(base), num_labels=1)
    model.config.pad_token_id = tok.pad_token_id
    data = Dataset.from_list([{"prompt": render_prompt(tok, p["prompt"]), "chosen": " " + p["chosen"],
                               "rejected": " " + p["rejected"]} for p in pairs])
    args = RewardConfig(num_train_epochs=epochs, learning_rate=learning_rate,
                        per_device_train_batch_size=batch_size,
                        **trainer_kwargs(out / "_trainer", seed=seed))
    trainer = shown(RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tok), progress)
    return train_and_save(trainer, out, tok)
