from pathlib import Path

import pytest

from moalign.config import apply_overrides, load_suite
from moalign.errors import MoalignError
from moalign.policies import METHODS, load_recipe

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for d in ("policies", "soups", "evals")
                                        for p in (ROOT / d).glob("*.yaml")))
def test_every_shipped_yaml_validates(path):
    if path.startswith("evals/"):
        suite = load_suite(ROOT / path)
        assert len(suite.reference_point) == len(suite.objectives)
    else:
        module, cfg = load_recipe(ROOT / path)
        assert module.__name__ in {m.module for m in METHODS.values()}


def test_overrides_nest_parse_and_keep_order():
    data = {"b": 1, "a": {"x": 1}}
    out = apply_overrides(data, ["a.y=1e-4", "c=true", "b=[1, 2]", "d.e=text"])
    assert out == {"b": [1, 2], "a": {"x": 1, "y": 1e-4}, "c": True, "d": {"e": "text"}}
    assert list(out) == ["b", "a", "c", "d"] and data == {"b": 1, "a": {"x": 1}}
    with pytest.raises(MoalignError, match="expected key=value"):
        apply_overrides(data, ["novalue"])


def test_every_problem_reported_at_once(tmp_path):
    (tmp_path / "r.yaml").write_text("method: sft\nepochs: -1\nfoo: 1\nbatch_size: x\n")
    with pytest.raises(MoalignError) as e:
        load_recipe(tmp_path / "r.yaml")
    msg = str(e.value)
    assert "foo: unknown key" in msg and "epochs" in msg and "batch_size" in msg and "\n" not in msg


def test_unknown_method_names_the_choices(tmp_path):
    (tmp_path / "r.yaml").write_text("method: ppo_magic\n")
    with pytest.raises(MoalignError, match="unknown method 'ppo_magic' \\(known: .*sft"):
        load_recipe(tmp_path / "r.yaml")


def test_suite_reference_point_must_match(tmp_path):
    (tmp_path / "s.yaml").write_text("name: s\nobjectives: {helpful: 'world:helpful'}\n"
                                     "reference_point: [0, 0]\n")
    with pytest.raises(MoalignError, match="reference_point has 2 values for 1 objectives"):
        load_suite(tmp_path / "s.yaml")


def test_an_rl_setting_trl_would_ignore_fails_at_load():
    with pytest.raises(MoalignError, match="aggregation normalize_then_sum needs algorithm grpo"):
        load_recipe(ROOT / "policies/morlhf.yaml", ["rl.algorithm=rloo", "rl.aggregation=normalize_then_sum"])
    load_recipe(ROOT / "policies/morlhf.yaml", ["rl.algorithm=rloo"])


@pytest.mark.parametrize("recipe, old, new", [
    ("policies/modpo.yaml", "margins={helpful: reward_model}", "margins: now written in `objectives`"),
    ("policies/modpo.yaml", "objectives=[helpful, harmless]", "objectives: {helpful: dpo, harmless: dpo}"),
    ("policies/sft.yaml", "objectives=[helpful]", "objectives: {helpful: world:helpful"),
    ("soups/world.yaml", "expert.steps=3", "expert: now `rl:` for RL experts"),
])
def test_old_spellings_are_refused_with_the_new_one(recipe, old, new):
    with pytest.raises(MoalignError, match="old spelling|now") as e:
        load_recipe(ROOT / recipe, [old])
    assert new in str(e.value)


def test_objectives_are_name_to_spec_in_every_method():
    from moalign.policies import method_module
    from moalign.registry import REGISTRY
    for m in REGISTRY:
        field = method_module(m.name).Config.model_fields.get("objectives")
        if field is not None:  # the reward model has one objective's labels, not a set
            assert field.annotation == dict[str, str], m.name
