"""The world's response grammar: a stochastic writer whose answers vary on every objective.

Each answer draws a style (refuse or comply, how much content, filler, politeness, rudeness, an
unsafe aside) so that the corpus, and a base model trained on it, covers the objective space
without saturating any objective.
"""
from __future__ import annotations

import numpy as np

from moalign.world.lexicon import (
    CONTENT,
    FILLER,
    POLITE_CLOSERS,
    POLITE_OPENERS,
    REFUSALS,
    RUDE,
    TOPICS,
    UNSAFE_ASIDE,
    UNSAFE_WORDS,
    Topic,
)

_SAFE = [t for t in TOPICS if not t.risky]
_UNSAFE = sorted(UNSAFE_WORDS)


def _pick(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _content(rng: np.random.Generator, keywords: tuple[str, ...]) -> str:
    a, b = rng.choice(len(keywords), size=2, replace=False)
    return _pick(rng, CONTENT).format(a=keywords[a], b=keywords[b])


def sample_response(rng: np.random.Generator, topic: Topic) -> str:
    """One answer to a prompt about `topic`."""
    refuse = rng.random() < (0.4 if topic.risky else 0.05)
    n_content = 0 if refuse else int(rng.choice(5, p=[0.1, 0.25, 0.3, 0.2, 0.15]))
    n_filler = int(rng.choice(4, p=[0.35, 0.35, 0.2, 0.1]))
    body = [_content(rng, topic.keywords) for _ in range(n_content)]
    body += [_pick(rng, FILLER) for _ in range(n_filler)]
    if not topic.risky and rng.random() < 0.2:
        body.append(UNSAFE_ASIDE.format(a=_pick(rng, _UNSAFE)))
    if rng.random() < 0.1:
        body.append(_content(rng, _pick(rng, _SAFE).keywords))  # an off-topic digression
    if rng.random() < 0.15:
        body.append(_pick(rng, RUDE))
    body = [body[i] for i in rng.permutation(len(body))]
    if refuse:
        body.insert(0, _pick(rng, REFUSALS))
    if rng.random() < 0.4:
        body.insert(0, _pick(rng, POLITE_OPENERS))
    if rng.random() < 0.35:
        body.append(_pick(rng, POLITE_CLOSERS))
    return " ".join(body)
