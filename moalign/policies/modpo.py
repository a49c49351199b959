"""MODPO: multi-objective DPO (Zhou et al., Findings of ACL 2024; code: ZHZisZZ/modpo).

Stage 1 gives a margin reward r_j for every objective j other than the one trained on (k): an
implicit reward beta_j * log pi_j/pi_ref of a DPO model trained on j's pairs (the official safety
recipe), an explicit reward model (TRL RewardTrainer on j's pairs), or any moalign objective spec
(`world:`, `hf:`, `implicit:`). Stage 2 trains, for each preference w of a grid, on k's pairs with

    loss = -log sigmoid( (1/w_k) * [ beta * (logratio(y_w) - logratio(y_l))
                                     - sum_{j!=k} w_j (r_j(y_w) - r_j(y_l)) ] )

which is TRL's DPO sigmoid loss with beta' = beta / w_k and reference log-probs shifted by
margin / beta (`MODPOTrainer`, no copy of TRL's loss). The set of policies is the front; the
checkpoint interpolates between neighbouring points like MORLHF's.

Deviations from the official code:
1. Margins are computed once, before training, into dataset columns (the official code recomputes
   them every step; they come from frozen models, so this is exact and cheaper).
2. w_k = 0 is not patched with 1/(w_k + eps): that point trains on the pairs of the heaviest
   remaining objective instead (with two objectives: plain DPO on the margin objective's pairs,
   which is the stage-1 DPO model itself when the margin is implicit). A point with no other
   objective weighted (w_k = 1) is plain DPO, trained as a soup's DPO expert is (inside `compare`,
   the soup's expert and MODPO's margin model and plain point on one objective train once).
3. Logged DPO rewards are in shifted units (they include the margin).
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Literal, Union

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator

from moalign.config import Seed, Strict, refuse_objective_list
from moalign.training.dpo import DPO
from moalign.training.lora import Lora


def modpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
               ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, margin: torch.Tensor,
               beta: float, w_k: float) -> torch.Tensor:
    """The MODPO loss per example; `margin` = sum_{j != k} w_j (r_j(x, y_w) - r_j(x, y_l))."""
    if not w_k > 0:
        raise ValueError("MODPO needs w_k > 0 (train the w_k = 0 end on another objective's pairs)")
    delta = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    return -F.logsigmoid((beta * delta - margin) / w_k)


def _trainer_class():
    from trl import DPOTrainer

    class MODPOTrainer(DPOTrainer):
        """DPOTrainer whose precomputed reference log-probs are shifted by margin / beta.

        With args.beta = beta / w_k, TRL's own loss becomes the MODPO loss. The dataset carries
        `margin_chosen` and `margin_rejected` (sum_j w_j r_j of each response)."""

        def __init__(self, *args, margin_beta: float, **kwargs):
            self.margin_beta = margin_beta  # set first: the parent precomputes in __init__
            if not kwargs["args"].precompute_ref_log_probs:
                raise ValueError("MODPOTrainer needs precompute_ref_log_probs=True")
            super().__init__(*args, **kwargs)

        def _precompute_ref_logps(self, dataset, name, batch_size):
            if "ref_chosen_logps" in dataset.column_names:  # moalign precomputed them, margins included
                return dataset
            dataset = super()._precompute_ref_logps(dataset, name, batch_size)
            beta = self.margin_beta

            def shift(batch):
                return {"ref_chosen_logps": [r + m / beta for r, m in
                                             zip(batch["ref_chosen_logps"], batch["margin_chosen"])],
                        "ref_rejected_logps": [r + m / beta for r, m in
                                               zip(batch["ref_rejected_logps"], batch["margin_rejected"])]}

            return dataset.map(shift, batched=True, desc="Adding MODPO margins")

    return MODPOTrainer


class Config(Strict):
    base_model: str = Field("world:base", description="init and reference policy")
    data: Union[str, dict[str, str]] = Field(
        "world:pairwise_multi", description="a `pairwise_multi` file with `better_<name>` for every "
                                            "objective, or objective -> `pairwise` file")
    columns: dict[str, str] = Field({}, description="column map for `data`, moalign name -> file column")
    objectives: dict[str, str] = Field(
        min_length=2, description="name -> the source of its margin reward r_j when it is not `train_on`: "
                                  "`dpo` (a DPO model's implicit reward on its pairs), `reward_model`, or "
                                  "an objective spec; at least 2")
    train_on: str = Field(description="objective k whose pairs stage 2 trains on; one of `objectives`")
    grid: int = Field(4, ge=1, description="das-dennis partitions: grid + 1 policies for two objectives")
    beta: float = Field(0.1, gt=0, description="stage-2 DPO beta")
    loss_type: Literal["sigmoid", "hinge"] = Field("sigmoid", description="stage-2 loss: TRL's DPO `sigmoid` "
                                                                          "or `hinge` loss, with the margin")
    epochs: float = Field(1.0, gt=0, description="stage-2 epochs per point")
    max_steps: int = Field(-1, description="stage-2 step limit (-1: use `epochs`)")
    learning_rate: float = Field(5e-4, gt=0, description="stage-2 learning rate, constant schedule")
    batch_size: int = Field(16, ge=1, description="stage-2 pairs per device and step")
    margin_dpo: DPO = Field(DPO(), description="stage 1 for `dpo` margins (its beta is the implicit "
                                               "reward's; its data and columns default to the top-level "
                                               "ones); epochs, learning_rate and batch_size also train "
                                               "`reward_model` margins")
    lora: Lora | None = Field(None, description="LoRA for stage 1 (DPO margins) and stage 2")
    seed: Seed = Field(0, description="training seed")
    out: str = Field("runs/modpo", description="output directory when `--out` is not given")

    @model_validator(mode="before")
    @classmethod
    def _old_spellings(cls, data):
        if isinstance(data, dict) and "margins" in data:
            raise ValueError("margins: now written in `objectives` (name -> `dpo`, `reward_model` or an "
                             "objective spec), e.g. objectives: {helpful: dpo, harmless: dpo}")
        return refuse_objective_list(data, "{helpful: dpo, harmless: dpo}")

    @model_validator(mode="after")
    def _check(self):
        if self.train_on not in self.objectives:
            raise ValueError(f"train_on {self.train_on!r} is not one of objectives {list(self.objectives)}")
        if "data" not in self.margin_dpo.model_fields_set:  # the margin models learn from the recipe's data
            self.margin_dpo = self.margin_dpo.model_copy(update={"data": self.data, "columns": self.columns})
        return self


def _pairs(cfg: Config) -> dict[str, list[dict]]:
    """Each objective's preference pairs (by its better_<objective> labels, or from its own pairwise file)."""
    from moalign.data.pairs import objective_pairs
    return objective_pairs(cfg.data, list(cfg.objectives), cfg.columns)


def pair_logps(path: str, rows: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi of every pair's chosen and rejected response under the model at `path`. Under the base,
    the reference log-probs: the same for every grid point, and half of a DPO margin's implicit reward.

    Computed here rather than by TRL's precompute, which caches them in a per-process temporary file
    that other ranks of a distributed run cannot read."""
    from moalign.models import load_causal_lm, load_tokenizer, sequence_logprobs

    tok, model = load_tokenizer(path), load_causal_lm(path).eval()
    prompts = [r["prompt"] for r in rows]
    with torch.no_grad():
        return tuple(sequence_logprobs(model, tok, prompts, [r[side] for r in rows])
                     for side in ("chosen", "rejected"))


def _stage2(base: str, rows: list[dict], ref: tuple[torch.Tensor, torch.Tensor], beta: float, w_k: float,
            cfg: Config, out: Path, progress: bool) -> float:
    from datasets import Dataset
    from trl import DPOConfig

    from moalign.models import completion_text, load_causal_lm, load_tokenizer, render_prompt
    from moalign.training import seeded, shown, train_and_save, trainer_kwargs

    tok = load_tokenizer(base)
    model = load_causal_lm(base, train=True)
    # the reference log-probs shifted by margin / beta
    data = Dataset.from_list([{"prompt": render_prompt(tok, r["prompt"]),
                               "chosen": completion_text(tok, r["prompt"], r["chosen"]),
                               "rejected": completion_text(tok, r["prompt"], r["rejected"]),
                               "ref_chosen_logps": float(ref[0][n]) + r["margin_chosen"] / beta,
                               "ref_rejected_logps": float(ref[1][n]) + r["margin_rejected"] / beta}
                              for n, r in enumerate(rows)])
    model.train()
    args = DPOConfig(num_train_epochs=cfg.epochs, max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
                     beta=beta / w_k, loss_type=[cfg.loss_type], per_device_train_batch_size=cfg.batch_size,
                     lr_scheduler_type="constant", precompute_ref_log_probs=True,
                     **trainer_kwargs(out / "_trainer", seed=cfg.seed))
    trainer = seeded(_trainer_class(), cfg.seed, model=model, args=args, train_dataset=data,
                     processing_class=tok, peft_config=cfg.lora.peft() if cfg.lora else None,
                     margin_beta=beta)
    shown(trainer, progress)
    return train_and_save(trainer, out, tok)


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:
    from moalign.files import Stopwatch, atomic_dir, step
    from moalign.objectives import get_objective
    from moalign.preference import grid
    from moalign.progress import stage
    from moalign.training import base_path
    from moalign.training.dpo import dpo_pairs, dpo_step
    from moalign.training.interpolation import write_manifest
    from moalign.training.reward_model import train_reward_model

    watch = Stopwatch()
    base = base_path(cfg.base_model)
    k = cfg.train_on
    others = [j for j in cfg.objectives if j != k]
    pairs = _pairs(cfg)
    margin_dpo = cfg.margin_dpo  # its data and columns are the recipe's unless it names its own
    margin_pairs = dpo_pairs(margin_dpo, [j for j in others if cfg.objectives[j] == "dpo"])
    seconds: dict[str, float] = {}
    with atomic_dir(out, overwrite, resume=recipe or cfg.model_dump()) as tmp:
        # stage 1: a margin reward per other objective, scored once on every pair set that may need it
        margin_models, rewards, refs = {}, {}, {}
        for j in others:
            source, where = cfg.objectives[j], tmp / "margins" / j

            def reward_model(j=j, where=where) -> None:
                train_reward_model(base, pairs[j], where, epochs=cfg.margin_dpo.epochs,
                                   learning_rate=cfg.margin_dpo.learning_rate,
                                   batch_size=cfg.margin_dpo.batch_size, seed=cfg.seed, progress=progress)

            with stage(f"margin {source} for {j}"):
                if source == "dpo":
                    trained = dpo_step(where, base, j, margin_dpo, margin_pairs[j], lora=cfg.lora,
                                       seed=cfg.seed, progress=progress, watch=watch)
                elif source == "reward_model":
                    trained = step(where, reward_model, watch)
                else:  # a spec: nothing to train
                    trained = 0.0
            start = time.time()
            scored = [o for o in cfg.objectives if o != j]
            if source == "dpo":  # beta * log pi_j / pi_ref (what `implicit:` scores): its reference half
                margin_models[j] = where  # is stage 2's too, so each pair set is scored once under the base
                for o in scored:
                    refs.setdefault(o, pair_logps(base, pairs[o]))
                    rewards[j, o] = tuple(cfg.margin_dpo.beta * (policy - ref).double().numpy()
                                          for policy, ref in zip(pair_logps(where, pairs[o]), refs[o]))
            else:
                objective = get_objective(f"hf:{where}" if source == "reward_model" else source, j)
                for o in scored:
                    rewards[j, o] = tuple(objective.score([p["prompt"] for p in pairs[o]],
                                                          [p[side] for p in pairs[o]])
                                          for side in ("chosen", "rejected"))
            seconds[f"margin:{j}"] = trained + time.time() - start
        # stage 2: one policy per preference
        anchors = []
        prefs = grid(list(cfg.objectives), cfg.grid)
        for i, pref in enumerate(prefs):
            w = pref.as_dict()
            kk = k if w[k] > 0 else max(others, key=lambda j: w[j])
            rel = f"points/{i:02d}"
            active = [j for j in cfg.objectives if j != kk and w[j] > 0]
            with stage(f"point {i + 1}/{len(prefs)}: {pref} (pairs of {kk})"):
                if not active and kk in margin_models:  # plain DPO on kk's pairs: stage 1 trained it
                    shutil.copytree(margin_models[kk], tmp / rel,
                                    ignore=shutil.ignore_patterns("train_log.json"),
                                    dirs_exist_ok=True)  # a resumed run may have copied it already
                    seconds[rel] = 0.0
                elif not active and cfg.loss_type == "sigmoid":  # plain DPO on kk's pairs, as a soup's expert
                    plain = DPO(epochs=cfg.epochs, max_steps=cfg.max_steps, learning_rate=cfg.learning_rate,
                                beta=cfg.beta, batch_size=cfg.batch_size)
                    seconds[rel] = dpo_step(tmp / rel, base, kk, plain, pairs[kk], lora=cfg.lora,
                                            seed=cfg.seed, progress=progress, watch=watch)
                else:
                    rows = [dict(p, margin_chosen=sum(w[j] * rewards[j, kk][0][n] for j in active),
                                 margin_rejected=sum(w[j] * rewards[j, kk][1][n] for j in active))
                            for n, p in enumerate(pairs[kk])]

                    def point(kk=kk, rows=rows, w=w, rel=rel) -> None:
                        if kk not in refs:  # scored once per pair set, counted in the first point's seconds
                            refs[kk] = pair_logps(base, pairs[kk])
                        _stage2(base, rows, refs[kk], cfg.beta, w[kk], cfg, tmp / rel, progress)

                    seconds[rel] = step(tmp / rel, point, watch)
            anchors.append({"preference": w, "path": rel})
        write_manifest(tmp, method="modpo", objectives=list(cfg.objectives), base=base, anchors=anchors,
                       tokenizer=anchors[0]["path"], semantics="lora-cat" if cfg.lora else "full",
                       recipe=recipe or cfg.model_dump(),
                       metrics={"train_seconds": watch.seconds(),
                                "seconds": {k2: round(v, 2) for k2, v in seconds.items()}})
    return out
