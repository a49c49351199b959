"""Steerable checkpoints: the one artifact every method writes and every tool reads.

A checkpoint is a directory with model files and `moalign.json`:
{format_version, method, objectives, base_model, steering: {kind, ...}, recipe, metrics}.
`load_steerable(dir)` returns the SteerablePolicy for its steering kind. There is one
implementation per steering mechanism (fixed, weight interpolation, prompt, parameter, user),
not per method. A plain HF checkpoint without a manifest loads as a `fixed` policy.
"""
from __future__ import annotations

import importlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Hashable, Sequence

from moalign.errors import MoalignError
from moalign.models import (
    Prompt,
    check_weights,
    generate_rendered,
    load_causal_lm,
    load_tokenizer,
    render_prompt,
)
from moalign.preference import Preference, PreferenceLike

MANIFEST = "moalign.json"
FORMAT_VERSION = 1

# steering kind -> "module:Class"; imported lazily so a kind's dependencies load only when used.
STEERING = {
    "fixed": "moalign.steerable:FixedPolicy",
    "interpolation": "moalign.soups.interpolate:InterpolationPolicy",
    "prompt": "moalign.conditioning:PromptPolicy",
    "parameters": "moalign.policies.clp:ParameterPolicy",
    "users": "moalign.users:UserPolicy",
}


@dataclass
class Manifest:
    method: str
    objectives: list[str]
    steering: dict[str, Any]
    base_model: str | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def write(self, directory: str | os.PathLike) -> None:
        path = Path(directory) / MANIFEST
        path.write_text(json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")

    @classmethod
    def read(cls, directory: str | os.PathLike) -> "Manifest":
        path = Path(directory) / MANIFEST
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise MoalignError(f"{path}: unreadable manifest ({e})") from None
        if data.get("format_version") != FORMAT_VERSION:
            raise MoalignError(f"{path}: format_version {data.get('format_version')!r} is not "
                               f"{FORMAT_VERSION}")
        missing = [k for k in ("method", "objectives", "steering") if k not in data]
        if missing or "kind" not in data.get("steering", {}):
            raise MoalignError(f"{path}: missing {', '.join(missing) or 'steering.kind'}")
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


class SteerablePolicy:
    """A policy steered per call by a preference over its objectives or by a user id."""

    kind: ClassVar[str]

    def __init__(self, path: Path, manifest: Manifest):
        self.path = path
        self.manifest = manifest
        self._tokenizer = None

    @property
    def objectives(self) -> list[str]:
        return list(self.manifest.objectives)

    @property
    def users(self) -> list[str]:
        """User ids this checkpoint knows (user-conditioned methods)."""
        return []

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.path)
        return self._tokenizer

    def preference(self, preference: PreferenceLike | None = None, user: str | None = None
                   ) -> Preference | None:
        """Validate the steering input: a preference over this policy's objectives, or a known user."""
        if user is not None:
            if preference is not None:
                raise MoalignError("give a preference or a user, not both")
            return self.user_preference(user)
        if preference is None:
            return None
        if not self.objectives:
            raise MoalignError(f"{self.path}: this checkpoint declares no objectives to steer")
        return Preference.parse(preference, self.objectives)

    def user_preference(self, user: str) -> Preference:
        raise MoalignError(f"{self.path}: this checkpoint knows no users (asked for {user!r})")

    def default_preference(self) -> Preference | None:
        """Uniform weights, used when a call gives no steering."""
        if not self.objectives:
            return None
        return Preference({o: 1.0 for o in self.objectives}, self.objectives)

    def batch_key(self, preference: Preference | None, user: str | None = None) -> Hashable:
        """Requests whose keys are equal are generated in one batch: they use the same model (each
        still gets its own texts from `prepare`). Policies with one model for every preference
        return a constant."""
        return (preference.key() if preference is not None else None), user

    def model_for(self, preference: PreferenceLike | None = None):
        """A transformers model for this preference (methods that materialise one)."""
        raise NotImplementedError(f"{type(self).__name__} has no model per preference")

    def system_text(self, preference: PreferenceLike | None = None) -> str | None:
        """The system message that carries this preference, for methods that steer through the
        prompt (RiC, DPA, CLP's prompt variants); None for the others."""
        return None

    def render(self, prompts: Sequence[Prompt], preference: PreferenceLike | None = None,
               user: str | None = None) -> list[str]:
        """The texts the model sees for this steering, without materialising a model: a batch of
        mixed preferences needs every job's texts but only one model."""
        pref = self.preference(preference, user) or self.default_preference()
        system = self.system_text(pref)
        return [render_prompt(self.tokenizer, p, system=system) for p in prompts]

    def prepare(self, prompts: Sequence[Prompt], preference: PreferenceLike | None = None,
                user: str | None = None) -> tuple[Any, list[str]]:
        """The model to generate with and the texts it sees, for this steering."""
        pref = self.preference(preference, user) or self.default_preference()
        return self.model_for(pref), self.render(prompts, pref)

    def prepare_batch(self,
                      jobs: Sequence[tuple[Sequence[Prompt], Any, str | None]]) -> tuple[Any, list[str]]:
        """One model and all texts for several (prompts, preference, user) jobs whose `batch_key`s are
        equal, to be generated in one call (the server's batcher). Equal keys mean one model serves
        every job, so only the first job's is materialised; the others' texts are rendered."""
        (prompts, preference, user), rest = jobs[0], jobs[1:]
        model, texts = self.prepare(prompts, preference, user)
        for prompts, preference, user in rest:
            texts += self.render(prompts, preference, user)
        return model, texts

    def reranks(self, user: str | None) -> bool:
        """Whether `complete` draws several candidates for this user and keeps one (no streaming then)."""
        return False

    def complete(self, model, texts: Sequence[str], rows: Sequence[tuple[Prompt, Any, str | None]],
                 **gen) -> list[str]:
        """Answers to rendered `texts`; `rows` holds each text's (prompt, preference, user). Policies
        that rerank candidates per user override this; the server calls it for every batch."""
        return generate_rendered(model, self.tokenizer, texts, **gen)

    def generate(self, prompts: Sequence[Prompt], preference: PreferenceLike | None = None,
                 user: str | None = None, **gen) -> list[str]:
        model, texts = self.prepare(prompts, preference, user)
        return self.complete(model, texts, [(p, preference, user) for p in prompts], **gen)


class FixedPolicy(SteerablePolicy):
    """One model; the preference is validated and ignored. Wraps any plain HF checkpoint."""

    kind = "fixed"

    def __init__(self, path: Path, manifest: Manifest):
        super().__init__(path, manifest)
        self._model = None

    def preference(self, preference: PreferenceLike | None = None, user: str | None = None
                   ) -> Preference | None:
        """Checked (non-negative, finite, not all zero, known names where the manifest lists any)."""
        if user is not None:
            return self.user_preference(user)
        return None if preference is None else Preference.parse(preference, self.objectives or None)

    def batch_key(self, preference, user=None) -> Hashable:
        return None

    def model_for(self, preference: PreferenceLike | None = None):
        self.preference(preference)
        if self._model is None:
            self._model = load_causal_lm(self.path)
        return self._model


def load_steerable(path: str | os.PathLike) -> SteerablePolicy:
    """The steerable policy stored in `path` (any method's checkpoint, or a plain HF model dir)."""
    p = Path(path).expanduser()
    if not p.is_dir():
        raise MoalignError(f"{path}: no such checkpoint directory")
    p = p.resolve()
    if (p / MANIFEST).exists():
        manifest = Manifest.read(p)
    else:
        check_weights(p)
        manifest = Manifest(method="hf", objectives=[], steering={"kind": "fixed"})
    kind = manifest.steering["kind"]
    if kind not in STEERING:
        raise MoalignError(f"{p / MANIFEST}: unknown steering kind {kind!r} "
                           f"(known: {', '.join(sorted(STEERING))})")
    module, _, name = STEERING[kind].partition(":")
    cls = getattr(importlib.import_module(module), name)
    if kind == "fixed":
        check_weights(p)
    return cls(p, manifest)
