"""RL from a base on a weighted sum of objectives, through TRL (`grpo` or `rloo`): reward =
sum_i w_i r_i(x, y) from moalign objectives, KL to the base by TRL's `beta`; TRL's `reward_weights`
does the linear scalarisation. One objective at weight 1 is a rewarded-soup expert, a grid of
weights is MORLHF; CLP and MaxMin train through the same arguments. Full fine-tuning or LoRA (the
adapter is saved as is). Returns the training seconds."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from moalign.config import Strict
from moalign.errors import MoalignError
from moalign.training.lora import Lora


class RL(Strict):
    algorithm: Literal["grpo", "rloo"] = Field("grpo", description="TRL trainer: `grpo` or `rloo`")
    prompts: str = Field("world:prompts", description="prompt file with a `prompt` column (no column map)")
    steps: int = Field(150, ge=1, description="optimiser steps (TRL's `max_steps`)")
    learning_rate: float = Field(1e-4, gt=0, description="learning rate")
    beta: float = Field(0.05, ge=0, description="KL strength to the base (0: no KL penalty)")
    num_generations: int = Field(8, ge=2, description="completions per prompt (the group size)")
    batch_size: int = Field(32, ge=2, description="completions per device and step; a multiple of "
                                                  "`num_generations`")
    max_completion_length: int = Field(64, ge=1, description="tokens per completion")
    temperature: float = Field(1.0, gt=0, description="sampling temperature during training")
    aggregation: Literal["sum_then_normalize", "normalize_then_sum"] = Field(
        "sum_then_normalize",
        description="grpo only: weight the rewards, then normalise within the group "
                    "(`sum_then_normalize`), or standardise each reward within its group first "
                    "(`normalize_then_sum`, for rewards on different scales); rloo allows only the first")

    @model_validator(mode="after")
    def _check(self):
        if self.algorithm == "rloo" and self.aggregation != "sum_then_normalize":
            raise ValueError(f"aggregation {self.aggregation} needs algorithm grpo "
                             "(TRL's RLOO sums the rewards)")
        return self


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
    return Dataset.from_list([{"prompt": render_prompt(tokenizer, p), "raw_prompt": p}
                              for p in _raw_prompts(cfg.prompts)])


def rl_args(cfg: RL, weights: list[float], output_dir: Path, *, seed: int, beta: float | None = None,
            lora: Lora | None = None):
    """TRL's GRPOConfig or RLOOConfig for `cfg` (beta overridable), with these reward weights; the
    LoRA adapters the run trains, if any, are checked (RL turns their dropout off too)."""
    from trl import GRPOConfig, RLOOConfig

    from moalign.training import trainer_kwargs

    if lora is not None and lora.dropout:
        raise MoalignError(f"lora.dropout {lora.dropout}: RL trains with every dropout off (a completion "
                           "must come from the policy that scores it); set lora.dropout to 0")
    config_cls = GRPOConfig if cfg.algorithm == "grpo" else RLOOConfig
    # disable_dropout: TRL leaves dropout on in GRPO/RLOO (modern LMs have none), so a base with
    # dropout (the world's GPT-2, 0.1) sampled its completions from randomly thinned networks, scored
    # their log-probs under other masks, and measured KL against a clean reference (full
    # fine-tuning) or a thinned one (LoRA: the reference is the same model, adapters off).
    extra = {"multi_objective_aggregation": cfg.aggregation} if cfg.algorithm == "grpo" else {}
    return config_cls(max_steps=cfg.steps, learning_rate=cfg.learning_rate,
                      beta=cfg.beta if beta is None else beta,
                      num_generations=cfg.num_generations, per_device_train_batch_size=cfg.batch_size,
                      max_completion_length=cfg.max_completion_length, temperature=cfg.temperature,
                      reward_weights=[float(w) for w in weights], disable_dropout=True, **extra,
                      **trainer_kwargs(output_dir, seed=seed))


def weighted(objectives: dict[str, str], weights: list[float]) -> tuple[dict[str, str], list[float]]:
    """The objectives with a nonzero weight, and their weights: a reward at weight 0 adds nothing to
    any completion's reward (either aggregation), so it is not scored, and MORLHF's point at a vertex
    of the simplex is the same training as the soup's expert on that objective."""
    if len(objectives) != len(weights):
        raise MoalignError(f"{len(weights)} reward weights for {len(objectives)} objectives")
    kept = [(name, spec, float(w)) for (name, spec), w in zip(objectives.items(), weights) if w != 0]
    if not kept:
        raise MoalignError("every reward weight is 0: nothing to train on")
    return {name: spec for name, spec, _ in kept}, [w for _, _, w in kept]


def rl_step(out: Path, base: str, objectives: dict[str, str], weights: list[float], cfg: RL, *,
            lora: Lora | None, seed: int, progress: bool, watch=None) -> float:
    """`train_rl` into `out` as a `moalign.files.step` (kept across a resumed run; inside `sharing`,
    trained once for every method that asks for it), keyed by the same arguments it trains on."""
    from moalign.files import share_key, step
    kept, kept_weights = weighted(objectives, weights)
    key = share_key("rl", base=str(base), objectives=kept, weights=kept_weights, rl=cfg.model_dump(),
                    lora=lora.model_dump() if lora else None, seed=seed)
    return step(out, lambda: train_rl(base, objectives, weights, cfg, out, lora=lora, seed=seed,
                                      progress=progress), watch, share=key)


def train_rl(base: str, objectives: dict[str, str], weights: list[float], cfg: RL, out: Path, *,
             lora: Lora | None = None, seed: int = 0, progress: bool = True) -> float:
    objectives, weights = weighted(objectives, weights)
    return train_rl_on(base, reward_functions(objectives), weights, cfg, out, lora=lora, seed=seed,
                       progress=progress)


def train_rl_on(base: str, reward_funcs: list, weights: list[float], cfg: RL, out: Path, *,
                lora: Lora | None = None, seed: int = 0, progress: bool = True) -> float:
    """RL from `base` on TRL reward functions (called with prompts, completions and raw_prompt)."""
    from trl import GRPOTrainer, RLOOTrainer

    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.training import seeded, shown, train_and_save

    tok = load_tokenizer(base)
    model = load_causal_lm(base, train=True).train()
    trainer_cls = GRPOTrainer if cfg.algorithm == "grpo" else RLOOTrainer
    args = rl_args(cfg, weights, out / "_trainer", seed=seed, lora=lora)
    trainer = shown(seeded(trainer_cls, seed, model=model, reward_funcs=reward_funcs, args=args,
                           train_dataset=rl_dataset(tok, cfg), processing_class=tok,
                           peft_config=lora.peft() if lora else None), progress)
    return train_and_save(trainer, out, tok)
