"""`text:<name>`: objectives of a real LM's text, scored offline by established scorers, after the
three preference dimensions of P-Soups (Jang et al., 2023), each dimension a pair of opposite poles
that sum to one:

| dimension | poles | scorer, mapped to [0, 1] |
|---|---|---|
| expertise | `expert` / `elementary` | Flesch-Kincaid grade (textstat) / 20, clipped |
| informativeness | `informative` / `concise` | words (textstat) / 100, clipped |
| style | `friendly` / `unfriendly` | (VADER compound sentiment + 1) / 2 |

textstat 0.7.4 counts syllables with pyphen (later versions fetch NLTK's cmudict at run time, which
fails offline); VADER ships its lexicon. The prompt is not read.
"""
from __future__ import annotations

import numpy as np

from moalign.errors import MoalignError
from moalign.objectives import Objective

GRADE_SCALE = 20.0  # a Flesch-Kincaid grade of 20 (graduate text) or more scores 1
WORD_SCALE = 100.0  # 100 words or more score 1 on informativeness
POLES = {"expert": ("expertise", False), "elementary": ("expertise", True),
         "informative": ("length", False), "concise": ("length", True),
         "friendly": ("sentiment", False), "unfriendly": ("sentiment", True)}
_vader = None


def expertise(text: str) -> float:
    import textstat
    if not text.strip():
        return 0.0
    return float(np.clip(textstat.flesch_kincaid_grade(text) / GRADE_SCALE, 0.0, 1.0))


def length(text: str) -> float:
    import textstat
    return float(np.clip(textstat.lexicon_count(text) / WORD_SCALE, 0.0, 1.0))


def sentiment(text: str) -> float:
    global _vader
    if _vader is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
        _vader = SentimentIntensityAnalyzer()
    return (float(_vader.polarity_scores(text)["compound"]) + 1.0) / 2.0


SCORERS = {"expertise": expertise, "length": length, "sentiment": sentiment}


class TextObjective(Objective):
    def __init__(self, target: str, *, spec: str, name: str | None = None):
        if target not in POLES:
            raise MoalignError(f"objective {spec!r}: unknown text objective (known: {', '.join(POLES)})")
        self.scorer, self.flip = SCORERS[POLES[target][0]], POLES[target][1]
        super().__init__(spec, name or target)

    def _score(self, prompts, responses) -> np.ndarray:
        import warnings
        with warnings.catch_warnings():  # textstat 0.7.4 imports pkg_resources, which warns
            warnings.simplefilter("ignore")
            raw = np.array([self.scorer(r) for r in responses], dtype=np.float64)
        return 1.0 - raw if self.flip else raw
