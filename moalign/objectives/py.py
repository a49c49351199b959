"""`py:<module>:<function>`: a user's own scorer, `function(prompts, responses) -> scores`, one
score in [0, 1] per pair (a list or array). The module is imported from the Python path (the
current directory included), so a file `my_scores.py` beside the recipe is `py:my_scores:fn`.
"""
from __future__ import annotations

import importlib
import sys

import numpy as np

from moalign.errors import MoalignError
from moalign.objectives import Objective


class PyObjective(Objective):
    def __init__(self, target: str, *, spec: str, name: str | None = None):
        module, sep, function = target.rpartition(":")
        if not sep or not module or not function:
            raise MoalignError(f"objective {spec!r}: expected py:<module>:<function>")
        if "" not in sys.path:
            sys.path.insert(0, "")
        try:
            self.function = getattr(importlib.import_module(module), function)
        except Exception as e:  # noqa: BLE001 - whatever the user's module raises on import
            raise MoalignError(f"objective {spec!r}: cannot import {module}.{function} "
                               f"({type(e).__name__}: {e})") from None
        if not callable(self.function):
            raise MoalignError(f"objective {spec!r}: {module}.{function} is not callable")
        super().__init__(spec, name or function)

    def _score(self, prompts, responses) -> np.ndarray:
        try:
            out = np.asarray(self.function(list(prompts), list(responses)), dtype=np.float64).reshape(-1)
        except Exception as e:  # noqa: BLE001 - the user's scorer failed or returned non-numbers
            raise MoalignError(f"objective {self.spec!r}: the scorer failed "
                               f"({type(e).__name__}: {e})") from None
        if out.shape != (len(responses),):
            raise MoalignError(f"objective {self.spec!r}: returned {out.size} scores for "
                               f"{len(responses)} responses")
        bad = ~np.isfinite(out) | (out < 0) | (out > 1)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise MoalignError(f"objective {self.spec!r}: score {float(out[i])!r} (response {i}) "
                               "is outside [0, 1]")
        return out
