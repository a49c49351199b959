"""The real-text suite: SmolLM2-135M-Instruct's own answers to everyday questions, scored by the
`text:` objectives (readability, length, sentiment), in every data format the world has.

`real:<file>[@<seed>]` names one of its files in recipes and eval suites (prompts, eval_prompts,
sft, scored, pairwise, pairwise_multi, user_pairwise), as `world:<file>` names the world's; the
data is sampled from the `smollm2` base once and cached ($MOALIGN_CACHE).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from moalign.errors import MoalignError
from moalign.progress import stage
from moalign.realtext.build import POLES, VERSION, RealSizes, build_real, profiles
from moalign.realtext.prompts import EVAL_ACTIVITIES, FORMS, TRAIN_ACTIVITIES

__all__ = ["POLES", "RealSizes", "build_real", "ensure_real", "profiles", "resolve"]
BASE = "smollm2"


def ensure_real(seed: int = 0, progress: bool = True) -> Path:
    """The suite's data for `seed`, sampled from SmolLM2 on first use (resumes if interrupted)."""
    from moalign.bases import resolve_model
    from moalign.files import atomic_dir
    from moalign.realtext.build import STYLES
    from moalign.world.base import cache_root

    model = resolve_model(BASE, progress)
    sizes = RealSizes()
    sampled = [seed, sizes.sampling(), model, TRAIN_ACTIVITIES, EVAL_ACTIVITIES, FORMS, STYLES]
    key = _digest([VERSION, asdict(sizes), sampled])
    path = cache_root() / f"real-{seed}-{key}"
    if not (path / "real.json").exists():
        answers = cache_root() / f"real-answers-{seed}-{_digest(sampled)}"
        with stage(f"real-text suite's data (once, into {path}; answers kept in {answers})"), \
                atomic_dir(path, overwrite=True, resume={"real": key}) as tmp:  # one builder at a time
            build_real(tmp, model, seed=seed, sizes=sizes, progress=progress, answers_dir=answers)
    return path


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:12]


def resolve(ref: str) -> str:
    """The path of a `real:<file>[@<seed>]` reference."""
    name, _, seed_text = ref[len("real:"):].partition("@")
    try:
        seed = int(seed_text) if seed_text else 0
    except ValueError:
        raise MoalignError(f"{ref}: the seed after @ must be an integer") from None
    files = {"prompts", "eval_prompts", "sft", "scored", "pairwise", "pairwise_multi", "user_pairwise"}
    if name not in files:
        raise MoalignError(f"{ref}: unknown real-text dataset (known: {', '.join(sorted(files))})")
    return str(ensure_real(seed) / "data" / f"{name}.jsonl")
