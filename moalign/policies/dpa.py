"""Directional Preference Alignment (Wang et al., ACL 2024): a preference is a unit vector v in reward
space, written into the system prompt; the policy learns it by iterated rejection-sampling
fine-tuning.

1. A multi-objective reward model: the objectives' own scorers (`reward: objectives`, e.g. the
   world's), or ridge-regression heads on the frozen base model's mean-pooled hidden states fitted to
   the `scored` data's score_<name> columns (`reward: ridge`, ArmoRM-style).
2. Each round: per prompt a direction (an angle in `angles` for two objectives, else a Dirichlet
   preference made unit-length), k samples from the current policy with the direction in the system
   prompt, keep the argmax of v . r, SFT the current policy on (direction, prompt, best answer).
3. The prompt is the released model's: "Your response should maximize weighted rating =
   helpful*71 + harmless*71" with integer weights round(100 v_i).

A preference on the simplex maps to v = w / ||w||_2; `angle=<degrees>` (two objectives) or weights
with negative entries ("helpful=1,concise=-0.5") give any direction (arithmetic control).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Mapping

import numpy as np
from pydantic import Field

from moalign.config import Seed, Strict
from moalign.errors import MoalignError
from moalign.preference import Preference
from moalign.training.lora import Lora


class Direction(Preference):
    """A unit vector over the objectives; entries may be negative."""

    __slots__ = ()

    def __init__(self, weights: Mapping[str, float], objectives):
        objectives = tuple(objectives)
        unknown = [k for k in weights if k not in objectives]
        if unknown:
            raise MoalignError(f"direction: unknown objective {unknown[0]!r} "
                               f"(known: {', '.join(objectives)})")
        try:
            v = np.array([float(weights.get(o, 0.0)) for o in objectives])
        except (TypeError, ValueError):
            raise MoalignError(f"direction: weights must be numbers ({dict(weights)!r})") from None
        if not np.all(np.isfinite(v)) or not np.any(v):
            raise MoalignError("direction: weights must be finite and not all zero")
        self.objectives, self.weights = objectives, v / np.linalg.norm(v)

    def __repr__(self) -> str:
        return ",".join(f"{o}={w:.3g}" for o, w in zip(self.objectives, self.weights))


def parse_preference(spec, objectives) -> Direction:
    """`angle=30` (degrees from the first objective towards the second), weights that may be negative
    (a dict, a list, or 'helpful=1,concise=-0.5'), or any Preference."""
    objectives = list(objectives)
    if isinstance(spec, Preference):
        return Direction(dict(zip(spec.objectives, spec.weights)), objectives)
    if isinstance(spec, str) and spec.strip().startswith("angle="):
        if len(objectives) != 2:
            raise MoalignError(f"direction: an angle needs two objectives, this policy has {len(objectives)}")
        try:
            theta = math.radians(float(spec.strip()[len("angle="):]))
        except ValueError:
            raise MoalignError(f"direction: bad angle in {spec!r}") from None
        return Direction({objectives[0]: math.cos(theta), objectives[1]: math.sin(theta)}, objectives)
    if isinstance(spec, str):
        parts = [p.partition("=") for p in spec.split(",") if p.strip()]
        if any(not sep for _, sep, _ in parts):
            return Direction(dict(zip(objectives, [p for p, _, _ in parts])), objectives)
        return Direction({k.strip(): v.strip() for k, _, v in parts}, objectives)
    if isinstance(spec, Mapping):
        return Direction(spec, objectives)
    values = list(spec)
    if len(values) != len(objectives):
        raise MoalignError(f"direction: {len(values)} weights for {len(objectives)} objectives")
    return Direction(dict(zip(objectives, values)), objectives)


def conditioning(steering: dict, preference: Preference) -> str:
    v = np.asarray(preference.weights, dtype=np.float64)
    v = v / np.linalg.norm(v)
    terms = " + ".join(f"{n}*{int(round(100 * x))}" for n, x in zip(steering["objectives"], v))
    return f"Your response should maximize weighted rating = {terms}"


class Config(Strict):
    base_model: str = Field("world:base", description="starting policy (and the feature extractor for "
                                                      "`ridge`)")
    objectives: dict[str, str] = Field(min_length=2, description="name -> objective spec, at least 2; the "
                                                                 "reward under `reward: objectives`")
    reward: Literal["objectives", "ridge"] = Field(
        "objectives", description="where r comes from: the objectives' scorers, or ridge heads on the "
                                  "base's hidden states fitted to `data`")
    data: str = Field("world:scored", description="training data of the ridge heads (`reward: ridge` only)")
    columns: dict[str, str] = Field({}, description="column map for `data`, moalign name -> file column")
    prompts: str = Field("world:prompts", description="prompt pool (a `prompt` column; no column map)")
    rounds: int = Field(4, ge=1, description="rejection-sampling rounds")
    prompts_per_round: int = Field(512, ge=1, description="prompts drawn per round (with replacement)")
    k: int = Field(8, ge=2, description="samples per prompt")
    angles: tuple[float, float] | None = Field(None, description="direction range in degrees (two "
                                                                 "objectives); none: the simplex, 0 to 90")
    epochs: float = Field(2.0, gt=0, description="SFT epochs per round")
    learning_rate: float = Field(5e-4, gt=0, description="SFT learning rate, constant schedule")
    batch_size: int = Field(16, ge=1, description="SFT batch size")
    max_length: int = Field(256, ge=8, description="SFT sequence length in tokens")
    max_new_tokens: int = Field(64, ge=1, description="length of the sampled answers in tokens")
    lora: Lora | None = Field(None, description="LoRA, merged into the saved model; refused when tokens "
                                                "must be added to the vocabulary")
    seed: Seed = Field(0, description="training and sampling seed")
    out: str = Field("runs/dpa", description="output directory when `--out` is not given")


def sample_directions(rng: np.random.Generator, names: list[str], n: int,
                      angles: tuple[float, float] | None) -> np.ndarray:
    """(n, objectives) unit vectors: angles uniform in `angles` (two objectives), else Dirichlet(1)
    preferences made unit-length."""
    if angles is not None:
        if len(names) != 2:
            raise MoalignError(f"dpa: `angles` needs two objectives, got {len(names)}")
        theta = np.radians(rng.uniform(min(angles), max(angles), size=n))
        return np.stack([np.cos(theta), np.sin(theta)], axis=1)
    w = rng.dirichlet(np.ones(len(names)), size=n)
    return w / np.linalg.norm(w, axis=1, keepdims=True)


class RidgeRewards:
    """Per-objective ridge regression on a frozen model's mean-pooled last hidden states."""

    def __init__(self, model_path: str, alpha: float = 1.0):
        from moalign.features import Featurizer
        self.featurizer, self.alpha = Featurizer(model_path, pooling="mean"), alpha

    def features(self, prompts, responses) -> np.ndarray:
        x = self.featurizer(list(prompts), list(responses)).astype(np.float64)
        return np.concatenate([x, np.ones((len(x), 1))], axis=1)

    def fit(self, prompts, responses, targets: np.ndarray) -> "RidgeRewards":
        x = self.features(prompts, responses)
        reg = self.alpha * np.eye(x.shape[1])
        reg[-1, -1] = 0.0  # no penalty on the bias
        self.heads = np.linalg.solve(x.T @ x + reg, x.T @ targets)
        return self

    def __call__(self, prompts, responses) -> np.ndarray:
        return self.features(prompts, responses) @ self.heads


def _reward_fn(cfg: Config, base: str, names: list[str]):
    """(prompts, responses) -> (rows, objectives) rewards, and metrics about the reward model."""
    from moalign.conditioning import score_matrix
    from moalign.objectives import get_objective

    if cfg.reward == "objectives":
        objectives = {n: get_objective(s, n) for n, s in cfg.objectives.items()}
        return (lambda p, r: score_matrix(objectives, p, r)), {}
    from moalign.data import load_data
    from moalign.world import resolve
    ds = load_data(resolve(cfg.data), "scored", columns=cfg.columns, objectives=names)
    y = np.stack([np.asarray(ds[f"score_{n}"], dtype=np.float64) for n in names], axis=1)
    cut = int(0.9 * len(ds))  # a held-out tenth measures the heads
    rm = RidgeRewards(base).fit(ds["prompt"][:cut], ds["response"][:cut], y[:cut])
    pred = rm(ds["prompt"][cut:], ds["response"][cut:])
    r2 = 1 - ((pred - y[cut:]) ** 2).sum(0) / np.maximum(((y[cut:] - y[cut:].mean(0)) ** 2).sum(0), 1e-12)
    return rm, {"ridge_heldout_r2": dict(zip(names, np.round(r2, 4).tolist()))}


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:

    from moalign.conditioning import generate_conditioned
    from moalign.data import load_data
    from moalign.files import Stopwatch, atomic_dir, chain_step, end_chain
    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.progress import stage
    from moalign.steerable import Manifest
    from moalign.training import base_path
    from moalign.training.sft import train_sft
    from moalign.world import resolve

    watch = Stopwatch()
    base = base_path(cfg.base_model)
    names = list(cfg.objectives)
    steering = {"kind": "prompt", "conditioner": "dpa", "objectives": names}
    rewards, metrics = _reward_fn(cfg, base, names)
    pool = list(load_data(resolve(cfg.prompts), "prompts")["prompt"])
    rng = np.random.default_rng(cfg.seed)
    rounds = []
    with atomic_dir(out, overwrite, resume=recipe or cfg.model_dump()) as tmp:
        for r in range(cfg.rounds):
            def one_round(where: Path, current: str, r=r) -> dict:
                model, tok = load_causal_lm(current), load_tokenizer(current)
                prompts = [pool[i] for i in rng.integers(0, len(pool), cfg.prompts_per_round)]
                dirs = sample_directions(rng, names, len(prompts), cfg.angles)
                systems = [conditioning(steering, Direction(dict(zip(names, v)), names)) for v in dirs]
                rep = np.repeat(np.arange(len(prompts)), cfg.k)  # k samples per prompt
                answers = generate_conditioned(model, tok, [prompts[i] for i in rep],
                                               [systems[i] for i in rep], max_new_tokens=cfg.max_new_tokens,
                                               seed=cfg.seed + 1000 * r, share_prompts=True)
                scores = rewards([prompts[i] for i in rep], answers).reshape(len(prompts), cfg.k,
                                                                             len(names))
                utility = (scores * dirs[:, None, :]).sum(-1)
                best = utility.argmax(1)
                rows = [{"prompt": p, "system": s, "response": answers[i * cfg.k + b]}
                        for i, (p, s, b) in enumerate(zip(prompts, systems, best))]
                del model
                train_sft(current, rows, where, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                          seed=cfg.seed + r, batch_size=cfg.batch_size, max_length=cfg.max_length,
                          lora=cfg.lora, progress=progress)
                chosen = scores[np.arange(len(prompts)), best]
                return {"metrics": {
                    "round": r + 1, "best_of_k_utility": round(float(utility.max(1).mean()), 4),
                    "mean_utility": round(float(utility.mean()), 4),
                    "kept_mean_scores": dict(zip(names, chosen.mean(0).round(4).tolist()))}}

            with stage(f"round {r + 1}/{cfg.rounds}: best-of-{cfg.k} samples, SFT") as shown:
                rounds.append(chain_step(tmp, r, one_round, first=base, rng=rng, watch=watch)["metrics"])
                shown.update(utility=rounds[-1]["best_of_k_utility"])
        end_chain(tmp, cfg.rounds - 1)
        Manifest(method="dpa", objectives=names, steering=steering, base_model=base,
                 recipe=recipe or cfg.model_dump(),
                 metrics={"train_seconds": watch.seconds(), "rounds": rounds, **metrics}).write(tmp)
    return out
