"""Fine-tuning from the shared base on a (weighted sum of) objective(s), through TRL.

- RL (`grpo` or `rloo`): reward = sum_i w_i r_i(x, y) from moalign objectives, with KL to the base
  (TRL's `beta`); TRL's `reward_weights` does the linear scalarisation. One objective with weight 1
  trains a rewarded-soup expert; a grid of weights is MORLHF.
- DPO: on one objective's pairs: its labels in `pairwise_multi` data (chosen/rejected by
  better_<objective>), or a `pairwise` file of its own (`data: {helpful: FILE, harmless: FILE}`).

Both support full fine-tuning and LoRA (the adapter is saved as is: soups and merges load it on
top of its base). Returns the training seconds.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, model_validator

from moalign.config import Strict
from moalign.policies.sft import Lora


class RL(Strict):
    algorithm: Literal["grpo", "rloo"] = "grpo"
    prompts: str = "world:prompts"
    steps: int = Field(150, ge=1)
    learning_rate: float = Field(1e-4, gt=0)
    beta: float = Field(0.05, ge=0)  # KL to the base
    num_generations: int = Field(8, ge=2)
    batch_size: int = Field(32, ge=2)  # completions per step (a multiple of num_generations)
    max_completion_length: int = Field(64, ge=1)
    temperature: float = Field(1.0, gt=0)
    aggregation: Literal["sum_then_normalize", "normalize_then_sum"] = "sum_then_normalize"  # grpo only

    @model_validator(mode="after")
    def _check(self):
        if self.algorithm == "rloo" and self.aggregation != "sum_then_normalize":
            raise ValueError(f"aggregation {self.aggregation} needs algorithm grpo (TRL's RLOO sums the rewards)")
        return self


class DPO(Strict):
    algorithm: Literal["dpo"] = "dpo"
    data: Union[str, dict[str, str]] = "world:pairwise_multi"  # a file, or objective -> file
    columns: dict[str, str] = {}
    epochs: float = Field(1.0, gt=0)
    max_steps: int = -1
    learning_rate: float = Field(5e-4, gt=0)
    beta: float = Field(0.1, gt=0)
    batch_size: int = Field(16, ge=1)


Algorithm = Annotated[Union[RL, DPO], Field(discriminator="algorithm")]


def _raw_prompts(path: str) -> list:
    from moalign.data import load_data
    from moalign.world import resolve
    return list(load_data(resolve(path), "prompts")["prompt"])


def reward_functions(objectives: dict[str, str]) -> list:
    """TRL reward functions scoring the raw prompt (before templating) and the completion."""
    from moalign.objectives import get_objective

    funcs = []
    for name, spec in objectives.items():
        objective = get_objective(spec, name)

        def reward(prompts, completions, raw_prompt, _objective=objective, **_):
            return _objective.score(raw_prompt, [c.strip() for c in completions]).tolist()

        reward.__name__ = name
        funcs.append(reward)
    return funcs


def rl_dataset(tokenizer, cfg: RL):
    """The RL prompts, rendered for the model, with the raw prompt kept for the reward functions."""
    from datasets import Dataset

    from moalign.models import render_prompt
    return Dataset.from_list([{"prompt": render_prompt(tokenizer, p), "raw_prompt": p} for p in _raw_prompts(cfg.prompts)])


def rl_args(cfg: RL, weights: list[float], output_dir: Path, *, seed: int, progress: bool, beta: float | None = None):
    """TRL's GRPOConfig or RLOOConfig for `cfg` (beta overridable), with these reward weights."""
    from trl import GRPOConfig, RLOOConfig

    from moalign.training import trainer_kwargs

    config_cls = GRPOConfig if cfg.algorithm == "grpo" else RLOOConfig
    extra = {"multi_objective_aggregation": cfg.aggregation} if cfg.algorithm == "grpo" else {}
    return config_cls(max_steps=cfg.steps, learning_rate=cfg.learning_rate, beta=cfg.beta if beta is None else beta,
                      num_generations=cfg.num_generations, per_device_train_batch_size=cfg.batch_size,
                      max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
                      reward_weights=[float(w) for w in weights], **extra,
                      **trainer_kwargs(output_dir, seed=seed, progress=progress))


def train_rl(base: str, objectives: dict[str, str], weights: list[float], cfg: RL, out: Path, *,
             lora: Lora | None = None, seed: int = 0, progress: bool = True) -> float:
    return train_rl_on(base, reward_functions(objectives), weights, cfg, out, lora=lora, seed=seed, progress=progress)


def train_rl_on(base: str, reward_funcs: list, weights: list[float], cfg: RL, out: Path, *,
                lora: Lora | None = None, seed: int = 0, progress: bool = True) -> float:
    """RL from `base` on TRL reward functions (called with prompts, completions and raw_prompt)."""
    from trl import GRPOTrainer, RLOOTrainer

    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.training import quiet, seeded, train_and_save

    tok = load_tokenizer(base)
    model = load_causal_lm(base, train=True).train()
    trainer_cls = GRPOTrainer if cfg.algorithm == "grpo" else RLOOTrainer
    args = rl_args(cfg, weights, out / "_trainer", seed=seed, progress=progress)
    trainer = quiet(seeded(trainer_cls, seed, model=model, reward_funcs=reward_funcs, args=args,
                           train_dataset=rl_dataset(tok, cfg), processing_class=tok,
                           peft_config=lora.peft() if lora else None), progress)
    return train_and_save(trainer, out, tok)


def dpo_pairs(cfg: DPO, objectives: list[str]) -> dict[str, list[dict]]:
    """Each objective's pairs from the DPO data, every file and label column checked."""
    from moalign.data.pairs import objective_pairs

    data = cfg.data if isinstance(cfg.data, str) else {o: cfg.data[o] for o in objectives if o in cfg.data}
    return objective_pairs(data, objectives, cfg.columns)


def train_dpo(base: str, objective: str, cfg: DPO, out: Path, *, lora: Lora | None = None, seed: int = 0,
              progress: bool = True, pairs: list[dict] | None = None) -> float:
    """DPO on `objective`'s pairs (`pairs`, or read from `cfg.data`)."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from moalign.models import completion_text, load_causal_lm, load_tokenizer, render_prompt
    from moalign.training import quiet, seeded, train_and_save, trainer_kwargs

    tok = load_tokenizer(base)
    model = load_causal_lm(base, train=True).train()
    pairs = dpo_pairs(cfg, [objective])[objective] if pairs is None else pairs
    data = Dataset.from_list([{"prompt": render_prompt(tok, r["prompt"]),
                               "chosen": completion_text(tok, r["prompt"], r["chosen"]),
                               "rejected": completion_text(tok, r["prompt"], r["rejected"])} for r in pairs])
    args = DPOConfig(num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
                     beta=cfg.beta, per_device_train_batch_size=cfg.batch_size, lr_scheduler_type="constant",
                     **trainer_kwargs(out / "_trainer", seed=seed, progress=progress))
    trainer = quiet(seeded(DPOTrainer, seed, model=model, args=args, train_dataset=data, processing_class=tok,
                           peft_config=lora.peft() if lora else None), progress)
    return train_and_save(trainer, out, tok)
