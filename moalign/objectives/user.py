"""`user:<dir>#<user id>`: one user's reward from a user model (MaxMin-RLHF groups, PAL ideal points).

`<dir>` is a user model or a checkpoint with one (steering kind `users`); see `moalign.users`.
"""
from __future__ import annotations

import numpy as np

from moalign.errors import MoalignError
from moalign.models import Prompt
from moalign.objectives import Objective


class UserObjective(Objective):
    def __init__(self, target: str, *, spec: str, name: str | None = None):
        from moalign.users import load_user_model, user_model_dir
        path, _, user = target.partition("#")
        if not user:
            raise MoalignError(f"objective {spec!r}: name the user after '#' (user:<dir>#<user id>)")
        self.model = load_user_model(user_model_dir(path))
        self.model.check_user(user)
        self.user = user
        super().__init__(spec, name or user)

    def _score(self, prompts: list[Prompt], responses: list[str]) -> np.ndarray:
        return self.model.reward(self.user, prompts, responses)
