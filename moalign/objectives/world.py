"""`world:<name>`: the synthetic world's exact programmatic objectives (moalign.world.scoring).

These are the ground truth that fronts are measured against, and need no model. A prompt given as
a message list is scored by its last user message, the question the response answers.
"""
from __future__ import annotations

import numpy as np

from moalign.errors import MoalignError
from moalign.models import Prompt
from moalign.objectives import Objective
from moalign.world.scoring import OBJECTIVES, score


def prompt_text(prompt: Prompt) -> str:
    """The question text of a prompt: the string itself, or the last user message's content."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    if not users:
        raise MoalignError("a message-list prompt has no user message to score against")
    return users[-1]


class WorldObjective(Objective):
    def __init__(self, target: str, *, spec: str, name: str | None = None):
        if target not in OBJECTIVES:
            raise MoalignError(f"objective {spec!r}: unknown world objective {target!r}; "
                               f"choose from {', '.join(OBJECTIVES)}")
        super().__init__(spec, name or target)
        self.objective = target

    def _score(self, prompts: list[Prompt], responses: list[str]) -> np.ndarray:
        return score(self.objective, [prompt_text(p) for p in prompts], responses)
