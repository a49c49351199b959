"""The real-text objectives' mapping to [0, 1], and `py:` objectives with their errors."""
import numpy as np
import pytest

from moalign.errors import MoalignError
from moalign.objectives import get_objective

PLAIN = "Cats are nice. Dogs run fast."
TECHNICAL = ("The thermodynamic equilibrium of heterogeneous catalytic systems necessitates "
             "comprehensive consideration of adsorption isotherms.")


def score(spec, texts):
    return get_objective(spec).score(["q"] * len(texts), texts)


def test_poles_are_complements_and_ordered():
    texts = [PLAIN, TECHNICAL, "I love this, it is wonderful and great!", "This is awful, I hate it.", ""]
    for a, b in (("expert", "elementary"), ("informative", "concise"), ("friendly", "unfriendly")):
        np.testing.assert_allclose(score(f"text:{a}", texts) + score(f"text:{b}", texts), 1.0)
    expert = score("text:expert", texts)
    assert expert[1] == 1.0 and expert[0] == 0.0 and expert[4] == 0.0  # grade 27 clips; grade -2.7 clips
    friendly = score("text:friendly", texts)
    assert friendly[2] > 0.9 > 0.5 > friendly[3] and friendly[4] == 0.5
    words = " ".join(["word"] * 50)
    np.testing.assert_allclose(score("text:informative", [words, words + " " + words * 2, ""]),
                               [0.5, 1.0, 0.0])


def test_text_objective_unknown_name():
    with pytest.raises(MoalignError, match="unknown text objective"):
        get_objective("text:funny")


@pytest.fixture
def scorers(tmp_path, monkeypatch):
    (tmp_path / "my_scores.py").write_text(
        "def good(prompts, responses):\n    return [min(len(r) / 10, 1.0) for r in responses]\n"
        "def short(prompts, responses):\n    return [0.5]\n"
        "def big(prompts, responses):\n    return [2.0 for r in responses]\n"
        "def crash(prompts, responses):\n    raise ValueError('no model')\n"
        "not_callable = 3\n")
    (tmp_path / "broken_mod.py").write_text("import does_not_exist\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_py_objectives_score_and_fail_in_one_line(scorers):
    np.testing.assert_allclose(score("py:my_scores:good", ["abcde", "a" * 30]), [0.5, 1.0])
    cases = {"py:my_scores:short": "returned 1 scores for 2 responses",
             "py:my_scores:big": r"score 2\.0 \(response 0\) is outside \[0, 1\]",
             "py:my_scores:crash": "the scorer failed \\(ValueError: no model\\)"}
    for spec, message in cases.items():
        with pytest.raises(MoalignError, match=message) as e:
            score(spec, ["a", "b"])
        assert "\n" not in str(e.value)
    for spec, message in {"py:broken_mod:f": "cannot import broken_mod.f \\(ModuleNotFoundError",
                          "py:my_scores:missing": "cannot import my_scores.missing",
                          "py:my_scores:not_callable": "is not callable",
                          "py:nocolon": "expected py:"}.items():
        with pytest.raises(MoalignError, match=message):
            get_objective(spec)


def test_py_objective_in_an_eval_suite_front(scorers, tiny_llama, run_cli, tmp_path):
    (tmp_path / "suite.yaml").write_text(
        "name: mine\nobjectives: {short: 'py:my_scores:good', helpful: 'world:helpful'}\n"
        "prompts: world:eval_prompts\nn_prompts: 4\ngrid: 1\nreference_point: [0, 0]\n"
        "generation: {max_new_tokens: 8}\n")
    code, out, err = run_cli("front", str(tiny_llama), "--eval", "suite.yaml", "--out", "front", "-q")
    assert code == 0, err
    import json
    front = json.loads((tmp_path / "front" / "front.json").read_text())
    assert 0 <= front["points"][0]["scores"]["short"] <= 1
