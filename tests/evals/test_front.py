import json

import pytest

from moalign.config import load_suite
from moalign.errors import MoalignError
from moalign.evals.front import read_front, trace_front, trace_to, write_front
from moalign.evals.pareto import hypervolume
from moalign.evals.plot import front_names, plot_fronts
from moalign.steerable import load_steerable


@pytest.fixture(scope="module")
def base_front(base_dir):
    suite = load_suite("evals/world.yaml", ["grid=3", "n_prompts=32"])
    return trace_front(load_steerable(base_dir), suite, method="base", progress=False)


def test_fixed_policy_front_is_one_point_repeated(base_front, base_dir):
    import moalign.evals.front as front_module
    points = base_front["points"]
    assert len(points) == 4
    assert all(p["scores"] == points[0]["scores"] for p in points)
    assert [p["preference"]["helpful"] for p in points] == pytest.approx([0, 1 / 3, 2 / 3, 1])
    s = points[0]["scores"]
    assert 0 < s["helpful"] < 1 and 0 < s["harmless"] < 1
    assert base_front["hypervolume"] == pytest.approx(s["helpful"] * s["harmless"], rel=1e-5)
    assert base_front["pareto_indices"] == [0, 1, 2, 3]
    assert base_front["compute"]["generated_tokens"] > 32
    # the policy ignores its preference with the same seeded decoding: traced once, not per point
    suite = load_suite("evals/world.yaml", ["grid=3", "n_prompts=4"])
    calls = []
    real = front_module.rollout
    front_module.rollout = lambda *a, **k: calls.append(a) or real(*a, **k)
    try:
        again = trace_front(load_steerable(base_dir), suite, method="base", progress=False)
    finally:
        front_module.rollout = real
    assert len(calls) == 1 and len(again["points"]) == 4


def test_front_json_schema_and_round_trip(base_front, tmp_path):
    path = write_front(base_front, tmp_path / "f")
    data = json.loads(path.read_text())
    for key in ("format_version", "method", "checkpoint", "eval", "objectives", "reference_point", "points",
                "pareto_indices", "hypervolume", "compute"):
        assert key in data
    assert data["objectives"] == ["helpful", "harmless"]
    assert set(data["points"][0]) >= {"preference", "scores", "n_prompts", "samples"}
    assert len(data["points"][0]["samples"]) == 3
    assert read_front(tmp_path / "f") == data
    assert (tmp_path / "f" / "front.png").stat().st_size > 10_000


def _front(method, pts, objectives):
    points = [{"preference": {}, "scores": dict(zip(objectives, p))} for p in pts]
    return {"method": method, "objectives": objectives, "points": points,
            "pareto_indices": list(range(len(pts))),
            "reference_point": [0.0] * len(objectives),
            "hypervolume": hypervolume(pts, [0.0] * len(objectives))}


def test_plots_for_two_and_three_objectives(tmp_path):
    import matplotlib.image as mpimg
    two = [_front("a", [[0.1, 0.9], [0.5, 0.5], [0.9, 0.1]], ["x", "y"]),
           _front("b", [[0.3, 0.3]], ["x", "y"])]
    img = mpimg.imread(plot_fronts(two, tmp_path / "two.png"))
    assert img.shape[0] > 300 and img.std() > 0.01
    three = [_front("a", [[0.1, 0.5, 0.9], [0.9, 0.5, 0.1]], ["x", "y", "z"])]
    assert plot_fronts(three, tmp_path / "three.png").exists()
    with pytest.raises(MoalignError, match="has objectives"):
        plot_fronts([two[0], three[0]], tmp_path / "bad.png")


def test_fronts_of_one_method_are_told_apart_by_checkpoint():
    a, b = _front("soup", [[0.5, 0.5]], ["x", "y"]), _front("morlhf", [[0.5, 0.5]], ["x", "y"])
    assert front_names([a, b]) == ["soup", "morlhf"]
    lora = dict(a, checkpoint="/runs/soup-lora")
    assert front_names([dict(a, checkpoint="/runs/soup"), lora]) == ["soup soup", "soup soup-lora"]
    other = dict(a, checkpoint="/old/soup-lora")
    assert front_names([lora, other, b]) == ["soup runs/soup-lora", "soup old/soup-lora", "morlhf"]
    assert front_names([lora, lora]) == ["soup #1", "soup #2"]


def test_read_front_rejects_other_json(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(MoalignError, match="not a front.json"):
        read_front(tmp_path / "x.json")


def test_nsga2_search_spends_its_budget_and_finds_the_soup_front(tmp_path, tokenizer):
    """On a policy whose scores are a known function of w, the search's points lie on that front."""
    import numpy as np

    from moalign.evals.pareto import nsga2_search

    seen = []

    def evaluate(w):
        seen.append(w)
        return [np.sqrt(w[0]), np.sqrt(w[1])]  # a concave front: x^2 + y^2 = 1

    nsga2_search(evaluate, 2, budget=24, seed=0)
    assert 12 <= len(seen) <= 24
    scores = np.array([[np.sqrt(w[0]), np.sqrt(w[1])] for w in seen])
    assert np.allclose((scores ** 2).sum(1), 1.0)
    assert scores[:, 0].min() < 0.3 and scores[:, 0].max() > 0.9  # spread over the front


def test_chord_gaps_by_hand():
    from moalign.evals.front import chord_gaps
    pts = [({"x": 0.0, "y": 1.0}, {"x": 0.0, "y": 1.0}), ({"x": 0.5, "y": 0.5}, {"x": 0.7, "y": 0.4}),
           ({"x": 1.0, "y": 0.0}, {"x": 1.0, "y": 0.0})]
    front = {"objectives": ["x", "y"], "points": [{"preference": p, "scores": s} for p, s in pts]}
    assert chord_gaps(front) == {"x": {"mean": 0.2, "min": 0.2}, "y": {"mean": -0.1, "min": -0.1}}
    with pytest.raises(MoalignError, match="end points"):
        chord_gaps({"objectives": ["x", "y"], "points": front["points"][:2]})


def test_suite_objectives_must_be_the_checkpoints(tmp_path):
    from moalign.steerable import Manifest, SteerablePolicy

    class Steered(SteerablePolicy):
        kind = "interpolation"

    policy = Steered(tmp_path, Manifest(method="soup", objectives=["helpful", "harmless"],
                                        steering={"kind": "x"}))
    with pytest.raises(MoalignError,
                       match="include \\['concise'\\], which this checkpoint cannot be steered on"):
        trace_front(policy, load_suite("evals/world_concise.yaml"), progress=False)


def test_an_interrupted_trace_resumes_from_its_points(soup_dir, tmp_path, stop_at):
    import moalign.evals.front as front_module
    suite = load_suite("evals/world.yaml", ["grid=3", "n_prompts=8"])
    policy = load_steerable(soup_dir)
    whole = trace_front(policy, suite, method="soup", progress=False)
    calls = stop_at(front_module, "rollout", 3)
    with pytest.raises(KeyboardInterrupt):
        trace_to(tmp_path / "f", policy, suite, method="soup", progress=False)
    front = trace_to(tmp_path / "f", policy, suite, method="soup", progress=False)
    assert len(calls) == 3 + 2  # points 0 and 1 were kept
    assert front["points"] == whole["points"] == read_front(tmp_path / "f")["points"]
    assert front["compute"]["generated_tokens"] == whole["compute"]["generated_tokens"]
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["front.json", "front.png"]
