"""Conditioned Language Policy (Wang et al., 2024): one model for every trade-off, trained by
multi-task RL over sampled preferences.

Each generation batch draws w ~ Dirichlet(alpha); the reward of a sample is w . r(x, y) (TRL's
GRPO/RLOO with the trainer's `reward_weights` set to w for that batch), with KL to the base. The
policy is conditioned on w by `conditioning`:

- `parameters`: one LoRA adapter per objective (peft), all active, adapter i scaled by w_i at
  forward time: theta(w) = theta_0 + sum_i w_i s B_i A_i. Serving never writes the weights, so one
  loaded model serves any w (training samples each step from the mixture merged into them, then
  unmerges); `lora.target_modules` picks the conditioned subset (the paper's variants: all layers,
  attention only, ...).
- `prompt`: one shared adapter; w is written into the system message ("weights helpful 0.3 ...").
- `both`: per-objective adapters and the prompt.

Deviations: GRPO instead of the paper's policy-gradient setup; w is drawn per generation batch
(all prompts of a step share it), not per prompt.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Sequence

import numpy as np
from pydantic import Field

from moalign.config import Seed, Strict
from moalign.errors import MoalignError
from moalign.preference import Preference
from moalign.steerable import Manifest, SteerablePolicy
from moalign.training.lora import Lora
from moalign.training.rl import RL

SHARED = "shared"  # the adapter of prompt-only conditioning


class Config(Strict):
    base_model: str = Field("world:base", description="frozen base and KL reference")
    objectives: dict[str, str] = Field(min_length=2, description="name -> objective spec (the rewards r_i), "
                                                                 "at least 2")
    conditioning: Literal["parameters", "prompt", "both"] = Field(
        "parameters", description="how the policy sees w: per-objective adapters scaled by w, w in the "
                                  "system message, or both")
    alpha: float = Field(1.0, gt=0, description="Dirichlet concentration of the sampled preferences "
                                                "(smaller: more mass near the vertices)")
    rl: RL = Field(RL(steps=300, learning_rate=1e-3),
                   description="the GRPO/RLOO run; LoRA adapters learn at 10x full fine-tuning's rate")
    lora: Lora = Field(Lora(r=16, alpha=32), description="shape of the per-objective (or shared) adapters; "
                                                         "not nullable")
    seed: Seed = Field(0, description="training seed; also seeds the w draws")
    out: str = Field("runs/clp", description="output directory when `--out` is not given")


def weights_text(names: Sequence[str], weights: Sequence[float]) -> str:
    """The prompt conditioning: `weights helpful 0.3 harmless 0.7` (two decimals)."""
    return "weights " + " ".join(f"{n} {float(w):.2f}" for n, w in zip(names, weights))


def adapter_names(steering: dict) -> list[str]:
    return list(steering["objectives"]) if steering["conditioning"] != "prompt" else [SHARED]


def set_mixture(model, names: Sequence[str], weights: Sequence[float]) -> None:
    """Scale each named LoRA adapter of `model` by its weight (peft's own scaling, so the forward
    pass computes base + sum_i w_i s_i B_i A_i x); no weight is written."""
    from peft.tuners.lora import LoraLayer

    found = False
    for module in model.modules():
        if isinstance(module, LoraLayer):
            base = module.__dict__.setdefault("_moalign_scaling", dict(module.scaling))
            for name, w in zip(names, weights):
                module.scaling[name] = float(w) * base[name]
            found = True
    if not found:
        raise MoalignError("the model has no LoRA adapters to mix")


def attach_adapters(model, names: Sequence[str], lora: Lora):
    """A peft model with one trainable adapter per name, all active."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, lora.peft(), adapter_name=names[0])
    for name in names[1:]:
        peft_model.add_adapter(name, lora.peft())
    peft_model.base_model.set_adapter(list(names))
    return peft_model


class ParameterPolicy(SteerablePolicy):
    """The base model with per-objective adapters mixed by w at forward time (and w in the prompt
    where the checkpoint was trained so). One loaded model serves every preference."""

    kind = "parameters"

    def __init__(self, path: Path, manifest: Manifest):
        super().__init__(path, manifest)
        self._model = None
        self._mixed: Preference | None = None

    @property
    def model(self):
        if self._model is None:
            from moalign.models import load_with_adapters
            names = adapter_names(self.manifest.steering)
            model = load_with_adapters(self.base_path, {n: self.path / "adapters" / n for n in names})
            model.base_model.set_adapter(names, inference_mode=True)
            self._model = model
        return self._model

    @property
    def base_path(self) -> str:
        return str(self.path / "base") if (self.path / "base").is_dir() else self.manifest.base_model

    def adapter_mixture(self, preference=None) -> list[tuple[Path, float]]:
        """Each adapter directory with its weight for this preference (what `model_for` mixes)."""
        if self.manifest.steering["conditioning"] == "prompt":
            return [(self.path / "adapters" / SHARED, 1.0)]
        pref = self.preference(preference) or self.default_preference()
        return [(self.path / "adapters" / n, float(w)) for n, w in zip(self.objectives, pref.weights)]

    def batch_key(self, preference, user=None):
        if self.manifest.steering["conditioning"] == "prompt":
            return None  # one shared adapter: any preferences share a batch
        return super().batch_key(preference, user)

    def model_for(self, preference=None):
        pref = self.preference(preference) or self.default_preference()
        if self.manifest.steering["conditioning"] != "prompt" and pref != self._mixed:
            set_mixture(self.model, self.objectives, pref.weights)
            self._mixed = pref
        return self.model

    def system_text(self, preference=None):
        if self.manifest.steering["conditioning"] == "parameters":
            return None
        return weights_text(self.objectives,
                            (self.preference(preference) or self.default_preference()).weights)


def _trainer_class(algorithm: str):
    from trl import GRPOTrainer, RLOOTrainer

    parent = GRPOTrainer if algorithm == "grpo" else RLOOTrainer

    class CLPTrainer(parent):
        """Draws w for each generation batch: the reward weights, the adapters' mixture and, with
        prompt conditioning, the system message all follow it."""

        def setup_clp(self, names, conditioning, alpha, seed, tokenizer, beta):
            # KL to the base: TRL computes the reference with the adapters disabled. The trainer was
            # built with beta 0, else TRL looks for a "default" adapter to copy as the reference.
            self.beta = beta
            self.clp = dict(names=list(names), conditioning=conditioning, alpha=alpha, tok=tokenizer,
                            rng=np.random.default_rng(seed))

        def _generate_and_score_completions(self, inputs):
            from moalign.models import render_prompt
            c = self.clp
            w = c["rng"].dirichlet(np.full(len(c["names"]), c["alpha"]))
            self.reward_weights = self.reward_weights.new_tensor(w)
            if c["conditioning"] != "prompt":
                set_mixture(self.model, c["names"], w)
            if c["conditioning"] != "parameters":
                system = weights_text(c["names"], w)
                inputs = [dict(x, prompt=render_prompt(c["tok"], x["raw_prompt"], system=system))
                          for x in inputs]
            return super()._generate_and_score_completions(inputs)

        def _generate_single_turn(self, *args, **kwargs):
            """Sample with the step's adapter mixture merged into the weights (peft's merge, undone
            after, as TRL does before it hands weights to vLLM): unmerged, two adapters add four
            small matmuls per layer and token (CLP's demo run: 196 s CPU against 174 merged, the
            same adapters within 1e-6). Sharded weights (FSDP, DeepSpeed) and vLLM keep TRL's path."""
            if self.use_vllm or self.is_fsdp_enabled or self.is_deepspeed_enabled:
                return super()._generate_single_turn(*args, **kwargs)
            self.model.merge_adapter()
            try:
                return super()._generate_single_turn(*args, **kwargs)
            finally:
                self.model.unmerge_adapter()

    return CLPTrainer


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:
    from transformers import set_seed

    from moalign.conditioning import add_missing_tokens
    from moalign.files import Stopwatch, atomic_dir
    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.preference import grid
    from moalign.training import base_path, keep_tracker_logs, shown
    from moalign.training.rl import reward_functions, rl_args, rl_dataset

    watch = Stopwatch()
    base = base_path(cfg.base_model)
    names = list(cfg.objectives)
    steering = {"kind": "parameters", "conditioning": cfg.conditioning, "objectives": names}
    tok = load_tokenizer(base)
    model = load_causal_lm(base, train=True)
    adapters = adapter_names(steering)
    data = rl_dataset(tok, cfg.rl)
    with atomic_dir(out, overwrite) as tmp:
        if cfg.conditioning != "parameters" and add_missing_tokens(
                tok, model, [weights_text(names, p.weights) for p in grid(names, 4)]):
            model.save_pretrained(tmp / "base")  # new embedding rows: the checkpoint keeps its own base
        args = rl_args(cfg.rl, [1.0 / len(names)] * len(names), tmp / "_trainer", seed=cfg.seed, beta=0.0,
                       lora=cfg.lora)
        set_seed(cfg.seed)  # the adapters' initialisation
        model = attach_adapters(model, adapters, cfg.lora).train()
        trainer = _trainer_class(cfg.rl.algorithm)(model=model, reward_funcs=reward_functions(cfg.objectives),
                                                   args=args, train_dataset=data, processing_class=tok)
        trainer.setup_clp(names, cfg.conditioning, cfg.alpha, cfg.seed, tok, cfg.rl.beta)
        shown(trainer, progress).train()
        keep_tracker_logs(tmp / "_trainer", tmp)
        for name in adapters:  # the peft scalings are not saved: ParameterPolicy sets them per call
            model.save_pretrained(tmp / "adapters", selected_adapters=[name])
        tok.save_pretrained(tmp)
        Manifest(method="clp", objectives=names, steering=steering, base_model=base,
                 recipe=recipe or cfg.model_dump(),
                 metrics={"train_seconds": watch.seconds(), "rl_steps": cfg.rl.steps}).write(tmp)
    return out
