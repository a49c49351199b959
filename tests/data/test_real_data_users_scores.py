"""No result without the file's data: user columns (`users add`), RiC's score columns, the objectives PAL and
MaxMin map users onto; and those methods on HelpSteer2 and PRISM-like files."""
import json
import shutil

import numpy as np
import pytest
from real_layouts import jsonl, world_rows

from moalign.errors import MoalignError

HS2_COLUMNS = "columns={score_helpfulness: helpfulness, score_verbosity: verbosity}"
HS2_OBJECTIVES = "objectives={helpfulness: world:helpful, verbosity: world:concise}"
HS2_MEANS = ("helpfulness", "verbosity")


def test_users_add_reads_the_user_column_through_columns(pal_dir, tmp_path, run_cli):
    """A file of two workers: without the map it is refused (it used to mix them), with it only w006's."""
    ckpt = tmp_path / "pal"
    shutil.copytree(pal_dir, ckpt)
    rows = world_rows("user_pairwise", 1600)
    mine = [dict(r, worker="w006") for r in rows if r["user_id"] == "user033"][:12]
    other = [dict(r, worker="w007") for r in rows if r["user_id"] == "user000"][:6]
    for r in mine + other:
        del r["user_id"]
    pairs = jsonl(tmp_path / "workers.jsonl", mine + other)
    code, _, err = run_cli("users", "add", ckpt, "--user", "w006", "--pairs", pairs)
    assert code == 2 and "'worker'" in err and "--columns" in err and str(pairs) in err
    add = ("users", "add", ckpt, "--pairs", pairs, "--user")
    code, _, err = run_cli(*add, "w006", "--columns", "{user_id: worker}")
    assert code == 0, err
    assert json.loads((ckpt / "users" / "users.json").read_text())["users"]["w006"]["pairs"] == 12
    code, _, err = run_cli(*add, "w008", "--columns", "{worker: user_id}")
    assert code == 2 and "wrong way" in err
    code, _, err = run_cli(*add, "w008", "--columns", "worker")
    assert code == 2 and "moalign name -> file column" in err


def test_ric_refuses_a_missing_score_column_and_uses_the_files_scores(helpsteer2, base_dir, tmp_path):
    from moalign.policies import load_recipe, train_recipe
    from moalign.policies.ric import _offline

    path, rows = helpsteer2
    _, cfg = load_recipe("policies/ric.yaml", [f"data={path}", HS2_COLUMNS, HS2_OBJECTIVES])
    _, _, _, raw = _offline(cfg)
    assert raw.mean(0) == pytest.approx([np.mean([r[a] for r in rows]) for a in HS2_MEANS])
    objectives = "objectives={helpfulness: world:helpful, harmless: world:harmless}"
    with pytest.raises(MoalignError) as info:  # it used to score `harmless` with world:harmless, silently
        train_recipe("policies/ric.yaml", [f"base_model={base_dir}", f"data={path}", HS2_COLUMNS,
                                           objectives], out=str(tmp_path / "ric"), progress=False)
    assert str(path) in str(info.value) and "score_harmless" in str(info.value)


@pytest.mark.parametrize("recipe", ["policies/pal.yaml", "policies/maxmin.yaml"])
def test_user_methods_want_objectives_on_real_data(prism, recipe):
    from moalign.policies import load_recipe
    with pytest.raises(MoalignError, match="objectives: required when data is not a world: reference"):
        load_recipe(recipe, [f"data={prism}", "columns={prompt: opening_prompt}"])
    _, cfg = load_recipe(recipe, [f"data={prism}", "objectives={helpful: world:helpful}"])
    assert list(cfg.objectives) == ["helpful"]
    assert len(load_recipe(recipe)[1].objectives) == 4  # the world's users keep the world's objectives


def test_ric_on_helpsteer2(helpsteer2, base_dir, tmp_path):
    from moalign.policies import train_recipe
    path, rows = helpsteer2
    fast = [f"base_model={base_dir}", "epochs=1", "online.iterations=0"]
    out = train_recipe("policies/ric.yaml", [*fast, f"data={path}", HS2_COLUMNS, HS2_OBJECTIVES],
                       out=str(tmp_path / "ric"), progress=False)
    mean = json.loads((out / "moalign.json").read_text())["steering"]["mean"]
    assert mean == pytest.approx([np.mean([r[a] for r in rows]) for a in HS2_MEANS])


@pytest.mark.parametrize("recipe,extra", [("policies/pal.yaml", ["epochs=2", "new_users=0"]),
                                          ("policies/maxmin.yaml", ["policy=none", "baseline=false"])])
def test_user_methods_on_prism(prism, base_dir, tmp_path, recipe, extra):
    from moalign.policies import train_recipe
    from moalign.users import load_user_model, user_model_dir
    objectives = "objectives={helpful: world:helpful, concise: world:concise}"
    data = [f"data={prism}", "columns={prompt: opening_prompt}"]
    out = train_recipe(recipe, [f"base_model={base_dir}", *data, objectives, *extra],
                       out=str(tmp_path / "m"), progress=False)
    model = load_user_model(user_model_dir(out))
    assert sorted(model.users) == ["user000", "user001", "user032", "user033"]
    assert model.objectives == ["helpful", "concise"]
