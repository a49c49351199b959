"""Rewards-in-Context (Yang et al., ICML 2024): one SFT model that reads target rewards in its prompt.

1. Every response of the offline `scored` data has a score per objective (its `score_<name>` column;
   a missing one is an error); each objective is z-normalised with its
   dataset mean/std (stored in the manifest) and the rounded values are written into the system
   message: `helpful 0.5 harmless -1.2`.
2. Offline stage: SFT (loss on the response only) on those prompts.
3. Online stage(s), multi-objective rejection sampling: targets on the front's boundary (each
   dimension uniform in [low, high], then every dimension but the smallest set to high), generate,
   score, relabel with the scores obtained, keep the samples whose score on any objective reaches
   that objective's 0.7 quantile, mix in a subsample of the offline data, continue SFT at a lower lr.
4. Inference maps a preference w to targets: the paper's piecewise-linear map (the argmax objective
   gets high, every other i gets low + min(n w_i, 1)(high - low)) or the repository's l2 map
   (low + w_i / ||w||_2 (high - low)); low/high are the min/max of the normalised offline scores.

Deviations: the tags go into the system message of the chat template rather than after the user
text; the online prompts come from a prompt file (the repository reuses the offline prompts).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from moalign.config import Seed, Strict
from moalign.errors import MoalignError
from moalign.preference import Preference
from moalign.training.lora import Lora


class Online(Strict):
    iterations: int = Field(2, ge=0, description="online rejection-sampling stages (0: offline only)")
    prompts: str = Field("world:prompts", description="prompt file of the online stages (a `prompt` column)")
    samples: int = Field(1024, ge=1, description="generations per stage")
    quantile: float = Field(0.7, gt=0, lt=1, description="a sample is kept when some objective's score "
                                                         "reaches this quantile of the batch, in (0, 1)")
    original: float = Field(0.5, ge=0, description="offline rows mixed in, as a fraction of the kept samples")
    epochs: float = Field(1.0, gt=0, description="SFT epochs per online stage")
    learning_rate: float = Field(2e-4, gt=0, description="SFT learning rate of the online stages")


class Config(Strict):
    base_model: str = Field("world:base", description="model to fine-tune")
    data: str = Field("world:scored", description="offline `scored` file (prompt, response, `score_<name>` "
                                                  "for every objective)")
    columns: dict[str, str] = Field({}, description="column map, moalign name -> file column")
    objectives: dict[str, str] = Field(min_length=2, description="name -> objective spec, at least 2; the "
                                                                 "specs score the online samples only")
    map: Literal["paper", "l2"] = Field("paper", description="preference -> targets map at inference: "
                                                             "`paper` (piecewise linear) or `l2`")
    epochs: float = Field(3.0, gt=0, description="offline SFT epochs")
    learning_rate: float = Field(5e-4, gt=0, description="offline SFT learning rate, constant schedule")
    batch_size: int = Field(16, ge=1, description="SFT batch size, offline and online")
    max_length: int = Field(256, ge=8, description="SFT sequence length in tokens")
    lora: Lora | None = Field(None, description="LoRA, merged into the saved model; refused when tokens "
                                                "must be added to the vocabulary")
    online: Online = Field(Online(), description="the online rejection-sampling stages")
    max_new_tokens: int = Field(64, ge=1, description="length of the online generations in tokens")
    seed: Seed = Field(0, description="training and sampling seed")
    out: str = Field("runs/ric", description="output directory when `--out` is not given")


def targets(weights, low, high, map: str = "paper") -> np.ndarray:
    """Normalised reward targets for preference weights (on the simplex), per the RiC paper's map
    (`paper`) or its repository's evaluation map (`l2`)."""
    w, low, high = (np.asarray(a, dtype=np.float64) for a in (weights, low, high))
    if map == "paper":
        t = low + np.minimum(len(w) * w, 1.0) * (high - low)
        t[int(np.argmax(w))] = high[int(np.argmax(w))]
        return t
    if map == "l2":
        return low + w / np.linalg.norm(w) * (high - low)
    raise MoalignError(f"unknown RiC preference map {map!r} (known: paper, l2)")


def format_targets(names, values) -> str:
    """The conditioning text: `name value` pairs, values rounded to one decimal."""
    return " ".join(f"{n} {round(float(v), 1) + 0.0:.1f}" for n, v in zip(names, values))


def conditioning(steering: dict, preference: Preference) -> str:
    return format_targets(steering["objectives"],
                          targets(preference.weights, steering["low"], steering["high"], steering["map"]))


def boundary_targets(rng: np.random.Generator, n: int, low, high) -> np.ndarray:
    """(n, objectives) online targets: uniform in [low, high], then all but the smallest (relative
    to its range) dimension raised to high."""
    low, high = np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
    t = rng.uniform(low, high, size=(n, len(low)))
    keep = np.argmin((t - low) / np.maximum(high - low, 1e-12), axis=1)
    out = np.broadcast_to(high, t.shape).copy()
    out[np.arange(n), keep] = t[np.arange(n), keep]
    return out


def _offline(cfg: Config) -> tuple[list[str], list, list[str], np.ndarray]:
    """Names, prompts, responses and raw (rows, objectives) scores of the offline data: each objective's
    score_<name> column (a file without one is an error, never scored by the objective instead)."""
    from moalign.data import load_data
    from moalign.world import resolve

    names = list(cfg.objectives)
    ds = load_data(resolve(cfg.data), "scored", columns=cfg.columns, objectives=names)
    cols = [np.asarray(ds[f"score_{name}"], dtype=np.float64) for name in names]
    return names, list(ds["prompt"]), list(ds["response"]), np.stack(cols, axis=1)


def _rows(names, prompts, responses, normalised) -> list[dict]:
    return [{"prompt": p, "response": r, "system": format_targets(names, z)}
            for p, r, z in zip(prompts, responses, normalised)]


def train(cfg: Config, out: Path, *, overwrite: bool = False, progress: bool = True,
          recipe: dict | None = None) -> Path:

    from moalign.conditioning import generate_conditioned, pareto_leading, score_matrix
    from moalign.data import load_data
    from moalign.files import Stopwatch, atomic_dir, chain_step, end_chain
    from moalign.models import load_causal_lm, load_tokenizer
    from moalign.objectives import get_objective
    from moalign.progress import stage
    from moalign.steerable import Manifest
    from moalign.training import base_path
    from moalign.training.sft import train_sft
    from moalign.world import resolve

    watch = Stopwatch()
    base = base_path(cfg.base_model)
    names, prompts, responses, raw = _offline(cfg)
    mean, std = raw.mean(axis=0), raw.std(axis=0)
    if np.any(std <= 0):
        raise MoalignError(f"{cfg.data}: objective {names[int(np.argmin(std))]!r} has the same score on "
                           "every row; it cannot be normalised")
    z = (raw - mean) / std
    low, high = z.min(axis=0), z.max(axis=0)
    steering = {"kind": "prompt", "conditioner": "ric", "objectives": names, "map": cfg.map,
                "mean": mean.tolist(), "std": std.tolist(), "low": low.tolist(), "high": high.tolist()}
    offline = _rows(names, prompts, responses, z)
    sft = dict(batch_size=cfg.batch_size, max_length=cfg.max_length, lora=cfg.lora, progress=progress)
    objectives = {n: get_objective(s, n) for n, s in cfg.objectives.items()}
    rng = np.random.default_rng(cfg.seed)
    stages = []
    with atomic_dir(out, overwrite, resume=recipe or cfg.model_dump()) as tmp:
        def offline_stage(where: Path, current: str) -> dict:
            with stage(f"offline SFT: {len(offline)} rows with their rewards in the prompt"):
                train_sft(current, offline, where, epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                          seed=cfg.seed, **sft)
            return {"stage": {"stage": "offline", "rows": len(offline)}}

        def online_stage(where: Path, current: str, it: int) -> dict:
            model, tok = load_causal_lm(current), load_tokenizer(current)
            batch = [pool[i] for i in rng.integers(0, len(pool), cfg.online.samples)]
            goals = boundary_targets(rng, len(batch), low, high)
            systems = [format_targets(names, g) for g in goals]
            answers = generate_conditioned(model, tok, batch, systems, max_new_tokens=cfg.max_new_tokens,
                                           seed=cfg.seed + it)
            got = (score_matrix(objectives, batch, answers) - mean) / std  # relabelled with what was obtained
            kept = pareto_leading(got, cfg.online.quantile)
            mixed = _rows(names, [batch[i] for i in kept], [answers[i] for i in kept], got[kept])
            n_orig = min(len(offline), int(round(cfg.online.original * len(kept))))
            mixed += [offline[i] for i in rng.choice(len(offline), n_orig, replace=False)]
            del model
            with stage(f"online {it + 1}/{cfg.online.iterations}: SFT on {len(kept)}/{len(batch)} kept "
                       f"samples (+{n_orig} offline rows)"):
                train_sft(current, mixed, where, epochs=cfg.online.epochs,
                          learning_rate=cfg.online.learning_rate, seed=cfg.seed + it + 1, **sft)
            return {"stage": {
                "stage": f"online {it + 1}", "kept": int(len(kept)),
                "generated": len(batch), "rows": len(mixed),
                "mean_scores": dict(zip(names, (got[kept] * std + mean).mean(axis=0).round(4).tolist()))}}

        pool = list(load_data(resolve(cfg.online.prompts), "prompts")["prompt"])
        for i in range(cfg.online.iterations + 1):
            run = offline_stage if i == 0 else (lambda where, current, it=i - 1:
                                                online_stage(where, current, it))
            stages.append(chain_step(tmp, i, run, first=base, rng=rng, watch=watch)["stage"])
        end_chain(tmp, cfg.online.iterations)
        Manifest(method="ric", objectives=names, steering=steering, base_model=base,
                 recipe=recipe or cfg.model_dump(),
                 metrics={"train_seconds": watch.seconds(), "stages": stages}).write(tmp)
    return out
