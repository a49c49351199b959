"""Prompt conditioning, shared by the methods that write the preference into the prompt (RiC's
reward targets, DPA's direction): the steering text goes into the system message, the same way in
training, sampling, evaluation and serving.

A checkpoint stores `steering: {kind: "prompt", conditioner: <method>, ...}`; the method's module
turns a preference into the text (`conditioning(steering, preference) -> str`) and may parse its own
preference forms (`parse_preference(spec, objectives)`). `PromptPolicy` serves any of them.
"""
from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Sequence

import numpy as np

from moalign.errors import MoalignError
from moalign.models import Prompt, generate_rendered, load_causal_lm, render_prompt
from moalign.preference import PreferenceLike
from moalign.steerable import Manifest, SteerablePolicy

CONDITIONERS = {"ric": "moalign.policies.ric", "dpa": "moalign.policies.dpa"}
_PIECES = re.compile(r"\d|[^\W\d]+|[^\w\s]")
_NUMBER = "0123456789-."


def add_missing_tokens(tokenizer, model, texts: Sequence[str]) -> list[str]:
    """Teach a closed-vocabulary tokenizer (the world's word-level one) the words, digits and signs
    of the conditioning texts, growing the model's embeddings; open-vocabulary tokenizers (BPE) have
    nothing to add. The digits, the minus sign and the point are always added (digits one by one),
    so that any number can be written later, e.g. a negative weight never seen in training."""
    from tokenizers import AddedToken

    unk = tokenizer.unk_token_id
    if unk is None or not texts:
        return []
    pieces = sorted({p for t in texts for p in _PIECES.findall(t)} | set(_NUMBER))
    missing = [p for p in pieces if unk in tokenizer(p, add_special_tokens=False)["input_ids"]]
    if missing:
        # whole words only: an added "rate" must not split a vocabulary word "rates"
        tokenizer.add_tokens([AddedToken(p, single_word=p.isalpha()) for p in missing])
        _grow_embeddings(model, len(tokenizer))
    return missing


def _grow_embeddings(model, size: int) -> None:
    """New rows drawn at the scale of the old ones (seeded): distinct vectors, so that "1" and "7"
    differ from the first step. The default (every new row near the mean) makes a number's digits
    nearly indistinguishable, and a small model then learns to ignore them."""
    import torch

    old = model.get_input_embeddings().weight
    n, std = old.shape[0], float(old.detach().std())
    model.resize_token_embeddings(size, mean_resizing=False)
    with torch.no_grad():
        weight = model.get_input_embeddings().weight
        gen = torch.Generator().manual_seed(size)
        weight[n:] = torch.randn(size - n, weight.shape[1], generator=gen).to(weight) * std


def conditioner(name: str):
    if name not in CONDITIONERS:
        raise MoalignError(f"unknown prompt conditioner {name!r} (known: {', '.join(CONDITIONERS)})")
    return importlib.import_module(CONDITIONERS[name])


def pareto_leading(scores: np.ndarray, quantile: float) -> np.ndarray:
    """Multi-objective rejection sampling (RiC's MORS): the rows whose score on any objective reaches
    that objective's `quantile` over the rows. `scores` is (rows, objectives)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or len(scores) == 0:
        raise MoalignError("rejection sampling needs a non-empty (rows, objectives) score matrix")
    return np.flatnonzero((scores >= np.quantile(scores, quantile, axis=0)).any(axis=1))


def generate_conditioned(model, tokenizer, prompts: Sequence[Prompt], systems: Sequence[str],
                         **gen) -> list[str]:
    """Answers to prompts, each with its own system text, in one batched pass."""
    texts = [render_prompt(tokenizer, p, system=s) for p, s in zip(prompts, systems, strict=True)]
    return generate_rendered(model, tokenizer, texts, **gen)


def score_matrix(objectives: dict, prompts: list, responses: list[str]) -> np.ndarray:
    """(rows, objectives) scores of responses under `objectives` (name -> Objective)."""
    return np.stack([obj.score(prompts, responses) for obj in objectives.values()], axis=1)


class PromptPolicy(SteerablePolicy):
    """One model; the preference becomes a system-message text through the method's conditioner."""

    kind = "prompt"

    def __init__(self, path: Path, manifest: Manifest):
        super().__init__(path, manifest)
        self.method = conditioner(manifest.steering.get("conditioner", ""))
        self._model = None

    def preference(self, preference: PreferenceLike | None = None, user: str | None = None):
        if user is None and preference is not None and hasattr(self.method, "parse_preference"):
            return self.method.parse_preference(preference, self.objectives)
        return super().preference(preference, user)

    def batch_key(self, preference, user=None):
        return None  # one model: requests with different preferences share a batch

    def model_for(self, preference: PreferenceLike | None = None):
        if self._model is None:
            self._model = load_causal_lm(self.path)
        return self._model

    def system_text(self, preference: PreferenceLike | None = None) -> str:
        pref = self.preference(preference) or self.default_preference()
        return self.method.conditioning(self.manifest.steering, pref)
