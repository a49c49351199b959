"""Rewarded soups (Rame et al., NeurIPS 2023; code: alexrame/rewardedsoups).

From one base, fine-tune one expert per objective with the same algorithm and settings (RL on
that objective's reward, or DPO on its labels), then serve theta(w) = theta_0 + sum_i w_i
(theta_i - theta_0) for any preference w: N trainings for the whole front, where MORLHF needs
one per point. The checkpoint holds the experts; `InterpolationPolicy` mixes them in memory.

Deviations from the official code:
1. RL is TRL's GRPO/RLOO (group-normalised advantages) instead of PPO with a value head.
2. LoRA experts are mixed as merged weights, sum_i w_i (theta_0 + s_i B_i A_i) (peft's "cat"),
   not as averaged A and B matrices (which gives (sum w_i B_i)(sum w_i A_i)).
"""
from __future__ import annotations

import time
from pathlib import Path

from pydantic import Field, model_validator

from moalign.config import Seed, Strict
from moalign.errors import MoalignError
from moalign.training.dpo import DPO, dpo_pairs, dpo_step
from moalign.training.interpolation import anchors_at_vertices, write_manifest
from moalign.training.lora import Lora
from moalign.training.rl import RL, rl_step


class Config(Strict):
    base_model: str = Field("world:base", description="shared init: `world:base`, a local HF directory, or "
                                                      "a hub id")
    objectives: dict[str, str] = Field(min_length=1, description="name -> objective spec, one expert each: "
                                                                 "an RL expert's reward; DPO experts use "
                                                                 "the name only (`better_<name>` labels)")
    rl: RL | None = Field(None, description="RL experts, each on its objective's reward (the default "
                                            "when `dpo` is not given)")
    dpo: DPO | None = Field(None, description="DPO experts instead, each on its objective's "
                                              "`better_<name>` labels")
    lora: Lora | None = Field(None, description="LoRA adapters instead of full fine-tuning (mixed as merged "
                                                "weights)")
    seed: Seed = Field(0, description="training seed, the same for every expert")
    out: str = Field("runs/soup", description="output directory when `--out` is not given")

    @model_validator(mode="before")
    @classmethod
    def _old_spelling(cls, data):
        if isinstance(data, dict) and "expert" in data:
            raise ValueError("expert: now `rl:` for RL experts (e.g. rl: {steps: 150}) or `dpo:` for DPO "
                             "experts (e.g. dpo: {data: world:pairwise_multi})")
        return data

    @model_validator(mode="after")
    def _one_way(self):
        if self.rl is not None and self.dpo is not None:
            raise ValueError("rl, dpo: give one of them (every expert is trained the same way)")
        if self.dpo is None and self.rl is None:
            self.rl = RL()
        return self


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:
    from moalign.files import Stopwatch, atomic_dir
    from moalign.progress import stage
    from moalign.training import base_path

    watch = Stopwatch()
    base = base_path(cfg.base_model)
    names = list(cfg.objectives)
    # every DPO expert's pairs, checked before the first expert trains
    pairs = {} if cfg.dpo is None else dpo_pairs(cfg.dpo, names)
    seconds: dict[str, float] = {}
    with atomic_dir(out, overwrite, resume=recipe or cfg.model_dump()) as tmp:
        for i, name in enumerate(names):
            target = tmp / "experts" / name
            with stage(f"expert {i + 1}/{len(names)}: {name}"):
                if cfg.dpo is None:
                    seconds[name] = rl_step(target, base, {name: cfg.objectives[name]}, [1.0], cfg.rl,
                                            lora=cfg.lora, seed=cfg.seed, progress=progress, watch=watch)
                else:
                    seconds[name] = dpo_step(target, base, name, cfg.dpo, pairs[name], lora=cfg.lora,
                                             seed=cfg.seed, progress=progress, watch=watch)
        paths = {n: f"experts/{n}" for n in names}
        write_manifest(tmp, method="soup", objectives=names, base=base,
                       anchors=anchors_at_vertices(names, paths),
                       tokenizer=paths[names[0]], semantics="lora-cat" if cfg.lora else "full",
                       recipe=recipe or cfg.model_dump(),
                       metrics={"train_seconds": watch.seconds(),
                                "expert_seconds": {k: round(v, 2) for k, v in seconds.items()}})
    return out


def build(base: str, experts: dict[str, str], out: Path, *, overwrite: bool = False) -> Path:
    """A soup checkpoint from experts trained elsewhere (same architecture as `base`), by reference."""
    from moalign.files import atomic_dir
    from moalign.models import check_weights
    from moalign.soups.interpolate import check_same_shapes, load_anchor

    if not experts:
        raise MoalignError("soup build: give at least one --expert name=DIR")
    base_path = Path(base).expanduser().absolute()
    paths = {n: Path(p).expanduser().absolute() for n, p in experts.items()}
    for p in [base_path, *paths.values()]:
        check_weights(p)
    reference = load_anchor(base_path)
    for name, p in paths.items():
        check_same_shapes(reference, load_anchor(p), f"base {base_path}", f"expert {name} ({p})")
    names = list(paths)
    with atomic_dir(out, overwrite) as tmp:
        write_manifest(tmp, method="soup", objectives=names, base=str(base_path),
                       anchors=anchors_at_vertices(names, {n: str(p) for n, p in paths.items()}),
                       tokenizer=str(base_path), semantics="full",
                       recipe={"experts": {n: str(p) for n, p in paths.items()}},
                       metrics={"built_at": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return out
