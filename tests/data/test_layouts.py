"""The loaders on public preference datasets as they come (fixtures in conftest.py): HH-RLHF transcripts,
TRL conversations, DatasetDict splits, PKU-SafeRLHF's column map."""
import json

import pytest
from real_layouts import jsonl, transcript, world_rows

from moalign.data import load_data
from moalign.errors import MoalignError


def test_hh_rlhf_transcripts_split_at_the_last_assistant_turn(hh, tmp_path):
    ds = load_data(hh["helpful"], "pairwise")
    raw = [json.loads(line) for line in hh["helpful"].read_text().splitlines()]
    assert ds[0]["prompt"] == [{"role": "user", "content": raw[0]["chosen"].split("\n\nHuman: ")[1].split(
        "\n\nAssistant:")[0]}]
    assert [m["role"] for m in ds[1]["prompt"]] == ["user", "assistant", "user"]
    assert raw[1]["chosen"].endswith("Assistant: " + ds[1]["chosen"])
    assert raw[1]["rejected"].endswith("Assistant: " + ds[1]["rejected"])
    raw[3]["rejected"] = transcript("something else", "ok")
    with pytest.raises(MoalignError, match="row 4: chosen and rejected differ before their last"):
        load_data(jsonl(tmp_path / "bad.jsonl", raw), "pairwise")
    raw[3]["rejected"] = "no transcript here"
    with pytest.raises(MoalignError, match="row 4's rejected is not a transcript"):
        load_data(jsonl(tmp_path / "bad.jsonl", raw), "pairwise")


def test_trl_conversational_and_implicit_prompt_pairs(tmp_path):
    rows = world_rows("pairwise", 3)
    explicit = [{"prompt": [{"role": "user", "content": r["prompt"]}],
                 "chosen": [{"role": "assistant", "content": r["chosen"]}],
                 "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows]
    implicit = [{side: e["prompt"] + e[side] for side in ("chosen", "rejected")} for e in explicit]
    for name, data in (("explicit", explicit), ("implicit", implicit)):
        ds = load_data(jsonl(tmp_path / f"{name}.jsonl", data), "pairwise")
        assert ds["chosen"] == [r["chosen"] for r in rows], name
        assert ds["prompt"] == [e["prompt"] for e in explicit], name


def test_dataset_dict_splits(ultrafeedback):
    assert len(load_data(f"{ultrafeedback}#train_prefs", "pairwise")) == 12
    assert len(load_data(ultrafeedback, "pairwise", split="test_prefs")) == 4
    with pytest.raises(MoalignError, match=r"no split 'train' \(splits: train_prefs, test_prefs; pick one"):
        load_data(ultrafeedback, "pairwise")
    with pytest.raises(MoalignError, match="no split 'dev'"):
        load_data(f"{ultrafeedback}#dev", "pairwise")


def test_a_column_map_written_backwards_says_which_way_it_runs(pku):
    with pytest.raises(MoalignError) as info:
        load_data(pku, "pairwise_multi", columns={"better_response_id": "better_helpful"})
    assert "runs the wrong way" in str(info.value) and "moalign name -> file column" in str(info.value)
    assert "{better_helpful: better_response_id}" in str(info.value)
    ds = load_data(pku, "pairwise_multi", columns={"better_helpful": "better_response_id"})
    assert set(ds["better_helpful"]) == {0, 1}


def test_a_hub_split_is_the_only_one_loaded(ultrafeedback, monkeypatch):
    import datasets

    calls = []

    def fake(name, split=None):
        calls.append((name, split))
        saved = datasets.load_from_disk(str(ultrafeedback))
        return saved[split] if split else saved

    monkeypatch.setattr(datasets, "load_dataset", fake)
    assert len(load_data("HuggingFaceH4/ultrafeedback_binarized#test_prefs", "pairwise")) == 4
    assert calls == [("HuggingFaceH4/ultrafeedback_binarized", "test_prefs")]
    with pytest.raises(MoalignError, match="HuggingFaceH4/ultrafeedback_binarized: no split 'train'"):
        load_data("HuggingFaceH4/ultrafeedback_binarized", "pairwise")
