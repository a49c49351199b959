"""`implicit:<dir>[?ref=<dir>&beta=<float>]`: the implicit reward of a DPO-trained policy,
beta * (log pi(y|x) - log pi_ref(y|x)) over the response tokens (and end of sequence).

MODPO uses it as the margin reward of an objective learned by DPO; its beta must be the one the
DPO model was trained with, so by default both ref and beta come from the checkpoint's
moalign.json (base_model, recipe.beta), and the query string overrides them.
"""
from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

import numpy as np

from moalign.errors import MoalignError
from moalign.models import Prompt, check_weights, load_causal_lm, load_tokenizer, resolve, sequence_logprobs
from moalign.objectives import Objective


def _manifest(path: str) -> dict:
    file = Path(path) / "moalign.json"
    if not file.exists():
        return {}
    try:
        return json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MoalignError(f"{file}: unreadable manifest ({e})") from None


class ImplicitObjective(Objective):
    def __init__(self, target: str, *, spec: str, name: str | None = None):
        path, _, query = target.partition("?")
        check_weights(path)
        self.path = resolve(path)
        options = dict(parse_qsl(query, keep_blank_values=True))
        unknown = set(options) - {"ref", "beta"}
        if unknown:
            raise MoalignError(f"objective {spec!r}: unknown option(s) {', '.join(sorted(unknown))}; "
                               "use ?ref=<dir>&beta=<float>")
        manifest = _manifest(self.path)
        ref, beta = options.get("ref"), options.get("beta")
        if not ref and manifest.get("base_model"):
            ref = manifest["base_model"]
            if not Path(ref).expanduser().exists() and (Path(self.path) / ref).exists():
                ref = str(Path(self.path) / ref)  # a path relative to the checkpoint
        if not beta and (manifest.get("recipe") or {}).get("beta") is not None:
            beta = manifest["recipe"]["beta"]
        missing = [k for k, v in (("ref", ref), ("beta", beta)) if v in (None, "")]
        if missing:
            raise MoalignError(
                f"objective {spec!r}: no {' and no '.join(missing)} (not in {self.path}/moalign.json); "
                f"pass it as implicit:{path}?ref=<reference model dir>&beta=<DPO beta>")
        try:
            self.beta = float(beta)
        except (TypeError, ValueError):
            raise MoalignError(f"objective {spec!r}: beta {beta!r} is not a number") from None
        check_weights(ref)
        self.ref = resolve(ref)
        super().__init__(spec, name or Path(self.path).name)
        self._models = None

    def _load(self):
        if self._models is None:
            policy = load_causal_lm(self.path)
            ref = policy if self.ref == self.path else load_causal_lm(self.ref)
            self._models = (policy, ref, load_tokenizer(self.path))
        return self._models

    def _score(self, prompts: list[Prompt], responses: list[str]) -> np.ndarray:
        policy, ref, tok = self._load()
        ratio = (sequence_logprobs(policy, tok, prompts, responses) -
                 sequence_logprobs(ref, tok, prompts, responses))
        return self.beta * ratio.double().numpy()
