"""DPO methods (soup experts, MODPO), reward models and SFT on PKU-SafeRLHF, HH-RLHF and UltraFeedback files:
pairwise data per objective, every label checked before training, the data the margin models read recorded."""
import json

import pytest
from real_layouts import PKU_COLUMNS, jsonl

from moalign.errors import MoalignError


def train(recipe, overrides, out):
    from moalign.policies import train_recipe
    return train_recipe(recipe, overrides, out=str(out), progress=False)


def test_soup_dpo_experts_on_hh_rlhf_pairwise_files(hh, base_dir, tmp_path):
    """One pairwise file per objective; each expert's train_log.json records its 2 steps."""
    files = json.dumps({k: str(v) for k, v in hh.items()})
    fast = [f"base_model={base_dir}", "dpo.max_steps=2", "dpo.batch_size=4"]
    out = train("soups/world_dpo.yaml", [*fast, f"dpo.data={files}"], tmp_path / "soup")
    for name in ("helpful", "harmless"):
        assert json.loads((out / "experts" / name / "train_log.json").read_text()), name
    with pytest.raises(MoalignError, match="holds one objective's pairs"):
        train("soups/world_dpo.yaml", [f"base_model={base_dir}", f"dpo.data={hh['helpful']}"],
              tmp_path / "one")


def test_modpo_on_ultrafeedback_and_hh_pairs(hh, ultrafeedback, base_dir, tmp_path):
    """MODPO trains on a pairwise split as it comes; the manifest records what the margin model read."""
    from moalign.steerable import load_steerable
    data = {"harmless": f"{ultrafeedback}#train_prefs", "helpful": str(hh["helpful"])}
    fast = ["grid=1", "max_steps=1", "batch_size=4", "margin_dpo.max_steps=1", "margin_dpo.batch_size=4"]
    out = train("policies/modpo.yaml", [f"base_model={base_dir}", f"data={json.dumps(data)}", *fast],
                tmp_path / "modpo")
    assert load_steerable(out).manifest.recipe["margin_dpo"]["data"] == data


def test_soup_checks_every_experts_labels_before_training(pku, base_dir, tmp_path, monkeypatch):
    import moalign.training.dpo as dpo

    rows = [json.loads(line) for line in pku.read_text().splitlines()]
    rows[11]["safer_response_id"] = 2
    bad = jsonl(tmp_path / "bad.jsonl", rows)
    monkeypatch.setattr(dpo, "train_dpo", lambda *a, **k: pytest.fail("an expert trained before the check"))
    with pytest.raises(MoalignError) as info:
        train("soups/world_dpo.yaml", [f"base_model={base_dir}", f"dpo.data={bad}",
                                       f"dpo.columns={PKU_COLUMNS}"], tmp_path / "s")
    assert f"{bad}: row 12, column 'safer_response_id' (moalign's 'better_harmless') is 2" in str(info.value)


def test_modpo_manifest_records_the_margin_models_data(pku):
    from moalign.policies import load_recipe
    _, cfg = load_recipe("policies/modpo.yaml", [f"data={pku}", f"columns={PKU_COLUMNS}"])
    assert cfg.model_dump()["margin_dpo"]["data"] == str(pku)
    assert cfg.model_dump()["margin_dpo"]["columns"]["better_harmless"] == "safer_response_id"
    _, cfg = load_recipe("policies/modpo.yaml", [f"data={pku}", "margin_dpo.data=world:pairwise_multi"])
    assert cfg.model_dump()["margin_dpo"]["data"] == "world:pairwise_multi"


def test_pku_modpo_trains(pku, base_dir, tmp_path):
    train("policies/modpo.yaml", [f"base_model={base_dir}", f"columns={PKU_COLUMNS}", f"data={pku}",
                                  "grid=1", "max_steps=1", "batch_size=8", "margin_dpo.max_steps=1"],
          tmp_path / "modpo")


def test_reward_model_and_sft_take_the_same_pairwise_files(hh, ultrafeedback, base_dir, tmp_path):
    train("policies/reward_model.yaml", [f"base_model={base_dir}", "format=pairwise",
                                         f"data={hh['harmless']}", "objective=harmless"], tmp_path / "rm")
    train("policies/sft.yaml", [f"base_model={base_dir}", f"data={ultrafeedback}#train_prefs", "max_steps=1"],
          tmp_path / "sft")


def test_a_file_per_objective_names_every_objective(hh, base_dir, tmp_path):
    with pytest.raises(MoalignError,
                       match=r"give one file per objective \(helpful, harmless\); missing harmless"):
        train("soups/world_dpo.yaml", [f"base_model={base_dir}", f"dpo.data={{helpful: {hh['helpful']}}}"],
              tmp_path / "soup")
