import math

import numpy as np
import pytest

from moalign.errors import MoalignError
from moalign.preference import Preference, grid, sample

OBJ = ["helpful", "harmless"]


def test_parse_forms_agree_and_normalise():
    a = Preference.parse("helpful=0.7,harmless=0.3", OBJ)
    b = Preference.parse({"helpful": 7, "harmless": 3}, OBJ)
    c = Preference.parse([0.7, 0.3], OBJ)
    d = Preference.parse("7, 3", OBJ)
    assert a == b == c == d and hash(a) == hash(d)
    assert a["helpful"] == pytest.approx(0.7) and a.weights.sum() == pytest.approx(1.0)
    assert Preference.parse({"harmless": 2}, OBJ).as_dict() == {"helpful": 0.0, "harmless": 1.0}


@pytest.mark.parametrize("spec,message", [
    ("helpful=-0.2,harmless=1", "negative"),
    ({"helpful": float("nan"), "harmless": 1}, "not finite"),
    ("helpful=inf", "not finite"),
    ("helpful=abc", "not a number"),
    ("kind=1", "unknown objective 'kind'"),
    ("helpful=0,harmless=0", "all weights are zero"),
    ([0.5, 0.3, 0.2], "3 weights for 2 objectives"),
    ("helpful", "expected name=weight"),
])
def test_bad_preferences_are_clear_errors(spec, message):
    with pytest.raises(MoalignError, match=message):
        Preference.parse(spec, OBJ)


def test_grid_is_das_dennis():
    g = grid(OBJ, 10)
    assert len(g) == 11
    assert sorted(round(p["helpful"], 6) for p in g) == [round(i / 10, 6) for i in range(11)]
    g3 = grid(["a", "b", "c"], 6)
    assert len(g3) == math.comb(6 + 2, 2) == 28
    assert len(set(g3)) == 28


def test_dirichlet_samples_are_seeded_and_on_the_simplex():
    a, b = sample(OBJ + ["concise"], 50, seed=3), sample(OBJ + ["concise"], 50, seed=3)
    assert a == b and a != sample(OBJ + ["concise"], 50, seed=4)
    w = np.array([p.weights for p in a])
    assert np.allclose(w.sum(1), 1) and (w >= 0).all()
    assert abs(w[:, 0].mean() - 1 / 3) < 0.1
