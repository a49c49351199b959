"""User conditioning: a user id steers any steerable policy.

A *user model* is what MaxMin-RLHF (a mixture of group reward models) and PAL (ideal points over
prototypes) learn from `user_pairwise` data. It is a directory with `users.json` and the method's
weights, and it gives every known user
- a reward r_u(x, y) on frozen features of the text (`reward`), usable for best-of-n reranking and as
  the objective `user:<dir>#<user id>`;
- a preference over named objectives (`preference`): non-negative least squares of the user's reward
  differences on a fixed set of reference pairs onto the objectives' score differences, normalised to
  the simplex. This is how a user id steers a soup, a MORLHF front or a prompt-conditioned policy.
New users are fitted from a few comparisons (`add_user`: PAL trains the user's weights alone,
MaxMin assigns the user to the group that explains the pairs best).

`UserPolicy` (steering kind `users`) wraps another steerable checkpoint: `user=` resolves to the
user's preference there, and with `rerank: n` the policy draws n candidates and returns the one the
user's own reward ranks first.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from moalign.errors import MoalignError
from moalign.models import Prompt, generate_rendered
from moalign.preference import Preference, PreferenceLike
from moalign.steerable import Manifest, SteerablePolicy

USERS_FILE = "users.json"
REFERENCE_FILE = "reference.npz"
# users.json "method" -> "module:Class"
USER_MODELS = {
    "maxmin": "moalign.policies.maxmin:GroupUsers",
    "pal": "moalign.policies.pal:PALUsers",
}


def objective_weights(reward_diff: np.ndarray, score_diff: np.ndarray) -> np.ndarray:
    """Non-negative w minimising ||score_diff @ w - reward_diff|| (up to scale), on the simplex.
    A reward that no objective explains (all zeros) maps to uniform weights."""
    from scipy.optimize import nnls
    w, _ = nnls(np.asarray(score_diff, dtype=np.float64), np.asarray(reward_diff, dtype=np.float64))
    return w / w.sum() if w.sum() > 0 else np.full(score_diff.shape[1], 1.0 / score_diff.shape[1])


def score_diffs(objectives: dict[str, str], prompts: list, chosen: list[str],
                rejected: list[str]) -> np.ndarray:
    """(pairs, objectives): each objective's score of the chosen minus the rejected response."""
    from moalign.objectives import get_objective
    cols = []
    for name, spec in objectives.items():
        obj = get_objective(spec, name)
        cols.append(obj.score(prompts, chosen) - obj.score(prompts, rejected))
    return np.stack(cols, axis=1)


def load_user_rows(data: str, columns: dict[str, str]) -> tuple[list[dict], dict[str, list[dict]]]:
    """The rows of a `user_pairwise` file (or `world:` reference), and the same rows by user id."""
    from moalign.data import load_data
    from moalign.world import resolve
    rows = list(load_data(resolve(data), "user_pairwise", columns=columns))
    by_user: dict[str, list[dict]] = {}
    for r in rows:
        by_user.setdefault(str(r["user_id"]), []).append(r)
    return rows, by_user


WORLD_OBJECTIVES = {o: f"world:{o}" for o in ("helpful", "harmless", "concise", "polite")}


def require_objectives(cfg):
    """The world's objectives are the default only for the world's users: on other data, the objectives
    users' preferences are mapped onto must be named (the world's scorers say nothing about real text)."""
    if not cfg.data.startswith("world:") and "objectives" not in cfg.model_fields_set:
        raise ValueError("objectives: required when data is not a world: reference (name -> objective spec "
                         "that users' preferences are mapped onto, e.g. {helpful: 'hf:/models/rm#0'})")
    return cfg


def world_users(data: str) -> tuple[dict[str, dict], dict] | None:
    """For a `world:` data reference, the world's users by id and its groups (the ground truth)."""
    from moalign.world import spec_of
    spec = spec_of(data)
    return None if spec is None else ({u["id"]: u for u in spec["users"]}, spec["groups"])


def user_pairs(rows, user: str | None = None) -> list[dict]:
    """{prompt, chosen, rejected} rows (of one user, when given) from user_pairwise or pairwise rows."""
    return [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in rows
            if user is None or r.get("user_id", user) == user]


class UserModel:
    """Base of the user models: users.json, the frozen featurizer and the reference pairs."""

    reads_prompts = True  # False: `rewards` and `fit_user` get None for the prompts' features

    def __init__(self, path: Path, spec: dict):
        self.path, self.spec = Path(path), spec
        self._featurizer = None
        ref = np.load(self.path / REFERENCE_FILE)
        self.reference = {k: ref[k] for k in ref.files}

    # -- what a method implements --------------------------------------------------------------
    def rewards(self, user: str, prompt_x: np.ndarray, response_x: np.ndarray) -> np.ndarray:
        """The user's reward for features of prompts and of prompt + response (rows aligned)."""
        raise NotImplementedError

    def fit_user(self, user: str, prompt_x, chosen_x, rejected_x) -> dict:
        """Fit a new user from the features of their pairs; return facts to store in users.json."""
        raise NotImplementedError

    def save_weights(self, tmp: Path) -> None:
        """Write the method's weights (after `fit_user`) into `tmp`."""

    # -- shared --------------------------------------------------------------------------------
    @property
    def users(self) -> list[str]:
        return list(self.spec["users"])

    @property
    def objectives(self) -> list[str]:
        return list(self.spec["objectives"])

    @property
    def featurizer(self):
        if self._featurizer is None:
            from moalign.features import Featurizer
            f = self.spec["features"]
            self._featurizer = Featurizer(f["path"], pooling=f["pooling"])
        return self._featurizer

    def check_user(self, user: str) -> None:
        if user not in self.spec["users"]:
            known = ", ".join(self.users[:8]) + (", ..." if len(self.users) > 8 else "")
            raise MoalignError(f"{self.path}: unknown user {user!r} (known: {known})")

    def reward(self, user: str, prompts: Sequence[Prompt], responses: Sequence[str]) -> np.ndarray:
        self.check_user(user)
        prompts = list(prompts)
        prompt_x = self.featurizer(prompts) if self.reads_prompts else None
        return self.rewards(user, prompt_x, self.featurizer(prompts, responses))

    def preference(self, user: str) -> dict[str, float]:
        self.check_user(user)
        return dict(self.spec["users"][user]["preference"])

    def mapped_preference(self, user: str) -> dict[str, float]:
        """The user's reward projected onto the objectives over the reference pairs."""
        r = self.reference
        diff = self.rewards(user, r["prompt"], r["chosen"]) - self.rewards(user, r["prompt"], r["rejected"])
        w = objective_weights(diff, r["score_diff"])
        return {o: round(float(v), 6) for o, v in zip(self.objectives, w)}

    def add_user(self, user: str, pairs: list[dict], overwrite: bool = False) -> dict:
        """Fit `user` from {prompt, chosen, rejected} pairs and save the model in place (atomically)."""
        from moalign.files import atomic_dir
        if not pairs:
            raise MoalignError(f"no comparisons for user {user!r}")
        if user in self.spec["users"] and not overwrite:
            raise MoalignError(f"{self.path}: user {user!r} exists (pass --overwrite to refit)")
        prompts = [p["prompt"] for p in pairs]
        f = self.featurizer
        prompt_x = f(prompts) if self.reads_prompts else None
        info = self.fit_user(user, prompt_x, f(prompts, [p["chosen"] for p in pairs]),
                             f(prompts, [p["rejected"] for p in pairs]))
        self.spec["users"][user] = {**info, "pairs": len(pairs), "added": True}
        self.spec["users"][user]["preference"] = self.mapped_preference(user)
        with atomic_dir(self.path, overwrite=True) as tmp:
            self.save(tmp)
        return self.spec["users"][user]

    def save(self, directory: Path) -> None:
        np.savez(directory / REFERENCE_FILE, **self.reference)
        self.save_weights(directory)
        (directory / USERS_FILE).write_text(json.dumps(self.spec, indent=1, sort_keys=True) + "\n")


def reference_set(featurizer, objectives: dict[str, str], pairs: list[dict], n: int, seed: int) -> dict:
    """Features and objective score differences of up to `n` pairs: where preferences are mapped."""
    rng = np.random.default_rng(seed)
    pick = [pairs[i] for i in sorted(rng.permutation(len(pairs))[:n])]
    prompts = [p["prompt"] for p in pick]
    chosen, rejected = [p["chosen"] for p in pick], [p["rejected"] for p in pick]
    return {"prompt": featurizer(prompts), "chosen": featurizer(prompts, chosen),
            "rejected": featurizer(prompts, rejected),
            "score_diff": score_diffs(objectives, prompts, chosen, rejected)}


def write_user_model(cls: type[UserModel], directory: Path, *, featurizer, objectives: dict[str, str],
                     pairs: list[dict], seed: int, spec: dict, **weights) -> UserModel:
    """Create a trained user model in `directory`: `spec` (method, users, ...) and the method's weights
    as attributes; the reference pairs and each user's preference are computed here."""
    directory.mkdir(exist_ok=True)  # a resumed run writes it again
    model = cls.__new__(cls)
    model.path, model._featurizer = directory, featurizer
    for name, value in weights.items():
        setattr(model, name, value)
    model.spec = {**spec, "features": {"path": featurizer.path, "pooling": featurizer.pooling},
                  "objectives": list(objectives), "objective_specs": dict(objectives)}
    model.reference = reference_set(featurizer, objectives, pairs, 512, seed)
    for user in model.spec["users"]:
        model.spec["users"][user]["preference"] = model.mapped_preference(user)
    model.save(directory)
    return model


def load_user_model(path: str | Path) -> UserModel:
    p = Path(path).expanduser()
    try:
        spec = json.loads((p / USERS_FILE).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MoalignError(f"{p}: not a user model ({USERS_FILE}: {e})") from None
    method = spec.get("method")
    if method not in USER_MODELS:
        raise MoalignError(f"{p / USERS_FILE}: unknown user model {method!r} "
                           f"(known: {', '.join(USER_MODELS)})")
    module, _, name = USER_MODELS[method].partition(":")
    return getattr(importlib.import_module(module), name)(p.resolve(), spec)


def user_model_dir(checkpoint: str | Path) -> Path:
    """The user model of a `users` checkpoint, or the directory itself when it is a user model."""
    p = Path(checkpoint).expanduser()
    if (p / USERS_FILE).exists():
        return p
    manifest = Manifest.read(p)
    if manifest.steering.get("kind") != "users":
        raise MoalignError(f"{p}: not a user checkpoint (steering kind {manifest.steering.get('kind')!r})")
    return p / manifest.steering["users"]


class UserPolicy(SteerablePolicy):
    """Another steerable policy plus a user model: `user=` becomes that user's preference there, and
    with `rerank` > 1 the best of that many samples by the user's own reward."""

    kind = "users"

    def __init__(self, path: Path, manifest: Manifest):
        from moalign.steerable import load_steerable
        super().__init__(path, manifest)
        steering = manifest.steering
        inner = Path(steering["policy"])
        self.inner = load_steerable(inner if inner.is_absolute() else path / inner)
        self.user_model = load_user_model(path / steering["users"])
        self.rerank = int(steering.get("rerank", 0))

    @property
    def objectives(self) -> list[str]:
        return self.inner.objectives

    @property
    def users(self) -> list[str]:
        return self.user_model.users

    @property
    def tokenizer(self):
        return self.inner.tokenizer

    def user_preference(self, user: str) -> Preference | None:
        """The user's weights on the objectives this policy steers (None for a policy without any)."""
        weights = self.user_model.preference(user)
        if not self.objectives:
            return None
        shared = {o: weights.get(o, 0.0) for o in self.objectives}
        if sum(shared.values()) <= 0:
            return self.inner.default_preference()
        return Preference(shared, self.objectives)

    def preference(self, preference: PreferenceLike | None = None, user: str | None = None):
        if user is not None:
            if preference is not None:
                raise MoalignError("give a preference or a user, not both")
            self.user_model.check_user(user)
            return self.user_preference(user)
        return self.inner.preference(preference)

    def default_preference(self):
        return self.inner.default_preference()

    def batch_key(self, preference, user=None):
        return self.inner.batch_key(preference)

    def model_for(self, preference: PreferenceLike | None = None):
        return self.inner.model_for(preference)

    def system_text(self, preference: PreferenceLike | None = None):
        return self.inner.system_text(preference)

    def steering(self, preference: PreferenceLike | None, user: str | None):
        """The preference the inner policy is steered by: the user's, when there is one (the server
        passes the one it resolved along with the user)."""
        return self.preference(None, user) if user is not None else self.preference(preference)

    def prepare(self, prompts: Sequence[Prompt], preference: PreferenceLike | None = None,
                user: str | None = None) -> tuple[Any, list[str]]:
        return self.inner.prepare(prompts, self.steering(preference, user))

    def render(self, prompts: Sequence[Prompt], preference: PreferenceLike | None = None,
               user: str | None = None) -> list[str]:
        return self.inner.render(prompts, self.steering(preference, user))

    def prepare_batch(self, jobs):
        """The inner policy batches the jobs, each by its own user's preference (a soup mixes them per
        row). The base class would give every row the model of the batch's first job."""
        return self.inner.prepare_batch([(prompts, self.steering(pref, user), None)
                                         for prompts, pref, user in jobs])

    def generate(self, prompts: Sequence[Prompt], preference: PreferenceLike | None = None,
                 user: str | None = None, **gen) -> list[str]:
        self.preference(preference, user)  # a preference and a user together is an error here
        return super().generate(prompts, preference, user, **gen)

    def reranks(self, user: str | None) -> bool:
        return user is not None and self.rerank > 1

    def complete(self, model, texts: Sequence[str], rows: Sequence[tuple], **gen) -> list[str]:
        """Rows with a user get `rerank` sampled candidates, and the one their reward ranks first."""
        if not any(self.reranks(user) for _, _, user in rows):
            return self.inner.complete(model, texts, rows, **gen)
        n = self.rerank
        counts = [n if self.reranks(user) else 1 for _, _, user in rows]
        expanded = [t for t, c in zip(texts, counts) for _ in range(c)]
        gen = {**gen, "do_sample": True, "batch_size": max(gen.get("batch_size", 64), len(expanded))}
        candidates = generate_rendered(model, self.tokenizer, expanded, **gen)
        owners = [(prompt, user) for (prompt, _, user), c in zip(rows, counts) for _ in range(c)]
        scores = np.zeros(len(candidates))
        for user in {user for _, user in owners if self.reranks(user)}:  # one scoring pass per user
            idx = [i for i, (_, u) in enumerate(owners) if u == user]
            scores[idx] = self.user_model.reward(user, [owners[i][0] for i in idx],
                                                 [candidates[i] for i in idx])
        out, start = [], 0
        for c in counts:
            out.append(candidates[start + int(np.argmax(scores[start:start + c]))])
            start += c
        return out


def write_user_checkpoint(directory: Path, *, method: str, policy: str, objectives: list[str],
                          base: str | None, rerank: int, recipe: dict, metrics: dict) -> None:
    """The manifest of a `users` checkpoint whose user model is `directory/users`."""
    Manifest(method=method, objectives=objectives, base_model=base, recipe=recipe, metrics=metrics,
             steering={"kind": "users", "policy": policy, "users": "users",
                       "rerank": rerank}).write(directory)
