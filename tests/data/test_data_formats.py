"""moalign.data.formats: loading every format from every file kind, and the one-line errors."""
import json

import datasets
import pytest

from moalign.data import FORMATS, load_data, to_pairwise
from moalign.errors import MoalignError

ROWS = {
    "pairwise": [{"prompt": "p0", "chosen": "good", "rejected": "bad"},
                 {"prompt": "p1", "chosen": "fine", "rejected": "poor"}],
    "pairwise_multi": [{"prompt": "p0", "response_0": "a", "response_1": "b", "better_helpful": 1,
                        "better_harmless": 0},
                       {"prompt": "p1", "response_0": "c", "response_1": "d", "better_helpful": 0,
                        "better_harmless": 1}],
    "scored": [{"prompt": "p0", "response": "a", "score_helpful": 0.5, "score_concise": -1.0},
               {"prompt": "p1", "response": "b", "score_helpful": 2.0, "score_concise": 0.25}],
    "user_pairwise": [{"user_id": "u0", "prompt": "p0", "chosen": "x", "rejected": "y"},
                      {"user_id": "u1", "prompt": "p1", "chosen": "z", "rejected": "w"}],
    "prompts": [{"prompt": "p0"}, {"prompt": "p1"}, {"prompt": "p2"}],
    "sft": [{"prompt": "p0", "response": "r0"}, {"prompt": "p1", "response": "r1"}],
}


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def error(path, fmt, **kw) -> str:
    with pytest.raises(MoalignError) as info:
        load_data(path, fmt, **kw)
    msg = str(info.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("fmt", sorted(ROWS))
def test_each_format_loads_from_jsonl(tmp_path, fmt):
    ds = load_data(write_jsonl(tmp_path / f"{fmt}.jsonl", ROWS[fmt]), fmt)
    assert isinstance(ds, datasets.Dataset)
    assert ds.to_list() == ROWS[fmt]
    assert set(FORMATS[fmt]) <= set(ds.column_names)


def test_parquet_csv_and_saved_dirs_load(tmp_path):
    src = datasets.Dataset.from_list(ROWS["pairwise"])
    src.to_parquet(str(tmp_path / "d.parquet"))
    src.to_csv(str(tmp_path / "d.csv"), index=False)
    src.save_to_disk(str(tmp_path / "saved"))
    datasets.DatasetDict({"train": src.select([0]), "test": src}).save_to_disk(str(tmp_path / "dd"))
    for p in ("d.parquet", "d.csv", "saved"):
        assert load_data(tmp_path / p, "pairwise").to_list() == ROWS["pairwise"], p
    assert len(load_data(tmp_path / "dd", "pairwise")) == 1
    assert len(load_data(str(tmp_path / "dd"), "pairwise", split="test")) == 2
    assert "no split 'dev'" in error(tmp_path / "dd", "pairwise", split="dev")


def test_column_map_renames(tmp_path):
    rows = [{"question": "q", "better": "a", "worse": "b", "extra": 7}]
    ds = load_data(write_jsonl(tmp_path / "c.jsonl", rows), "pairwise",
                   columns={"prompt": "question", "chosen": "better", "rejected": "worse"})
    assert ds.to_list() == [{"prompt": "q", "chosen": "a", "rejected": "b", "extra": 7}]


def test_pku_shape_through_column_map(tmp_path):
    rows = [{"prompt": "q", "response_0": "a", "response_1": "b", "better_response_id": 1,
             "safer_response_id": 0}]
    ds = load_data(write_jsonl(tmp_path / "pku.jsonl", rows), "pairwise_multi",
                   columns={"better_helpful": "better_response_id",
                            "better_harmless": "safer_response_id"},
                   objectives=["helpful", "harmless"])
    assert ds[0]["better_helpful"] == 1 and ds[0]["better_harmless"] == 0


def test_missing_columns_named_with_file(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", [{"prompt": "q", "answer": "a"}])
    msg = error(p, "pairwise")
    assert str(p) in msg and "chosen, rejected" in msg and "answer" in msg
    msg = error(p, "pairwise_multi", columns={"response_0": "answer"}, objectives=["helpful"])
    assert "response_1" in msg and "better_helpful" in msg


def test_bad_label_names_row_and_column(tmp_path):
    rows = [dict(ROWS["pairwise_multi"][0]) for _ in range(3)]
    rows[2]["better_harmless"] = 2
    p = write_jsonl(tmp_path / "bad.jsonl", rows)
    msg = error(p, "pairwise_multi")
    assert str(p) in msg and "row 3," in msg and "better_harmless" in msg  # 1-based: line 3 of the JSONL


def test_bad_score_and_bad_text(tmp_path):
    rows = [dict(ROWS["scored"][0]) for _ in range(3)]
    rows[1]["score_concise"] = None
    msg = error(write_jsonl(tmp_path / "s.jsonl", rows), "scored")
    assert "row 2," in msg and "score_concise" in msg
    rows = [dict(ROWS["sft"][0]) for _ in range(2)]
    rows[1]["response"] = None
    msg = error(write_jsonl(tmp_path / "t.jsonl", rows), "sft")
    assert "row 2," in msg and "'response'" in msg and "None" in msg
    rows = [{"prompt": "p", "response": 3}]
    assert "row 1," in error(write_jsonl(tmp_path / "n.jsonl", rows), "sft")


def test_empty_missing_unknown(tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    assert "empty" in error(tmp_path / "e.jsonl", "prompts")
    (tmp_path / "e.csv").write_text("prompt\n")
    assert "empty" in error(tmp_path / "e.csv", "prompts")
    assert "no such file" in error(tmp_path / "nope.jsonl", "prompts")
    assert "not a dataset" in error(tmp_path, "prompts")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    assert "bad.jsonl" in error(tmp_path / "bad.jsonl", "prompts")
    msg = error(tmp_path / "e.jsonl", "triples")
    assert "triples" in msg and "pairwise_multi" in msg


def test_message_lists(tmp_path):
    chat = [{"role": "user", "content": "hi"}]
    rows = [{"prompt": chat,
             "chosen": chat + [{"role": "assistant", "content": "first"},
                               {"role": "user", "content": "more"},
                               {"role": "assistant", "content": "hello!"}],
             "rejected": chat + [{"role": "assistant", "content": "go away"}]}]
    ds = load_data(write_jsonl(tmp_path / "chat.jsonl", rows), "pairwise")
    assert ds[0]["chosen"] == "hello!" and ds[0]["rejected"] == "go away"
    assert ds[0]["prompt"] == chat
    rows[0]["rejected"] = chat
    msg = error(write_jsonl(tmp_path / "noasst.jsonl", rows), "pairwise")
    assert "row 1," in msg and "rejected" in msg and "assistant" in msg


def test_objectives_inferred(tmp_path):
    ds = load_data(write_jsonl(tmp_path / "s.jsonl", ROWS["scored"]), "scored")
    assert {"score_helpful", "score_concise"} <= set(ds.column_names)
    p = write_jsonl(tmp_path / "none.jsonl", [{"prompt": "p", "response": "r"}])
    assert "score_<objective>" in error(p, "scored")


def test_to_pairwise_picks_the_better_response(tmp_path):
    ds = load_data(write_jsonl(tmp_path / "m.jsonl", ROWS["pairwise_multi"]), "pairwise_multi")
    helpful = to_pairwise(ds, "helpful")
    assert helpful.to_list() == [{"prompt": "p0", "chosen": "b", "rejected": "a"},
                                 {"prompt": "p1", "chosen": "c", "rejected": "d"}]
    harmless = to_pairwise(ds, "harmless")
    assert harmless["chosen"] == ["a", "d"] and harmless["rejected"] == ["b", "c"]
    with pytest.raises(MoalignError, match="better_polite"):
        to_pairwise(ds, "polite")


def test_world_files_load(tmp_path):
    from moalign.world import build_world
    spec = build_world(tmp_path, seed=0)
    for fmt in ("pairwise", "pairwise_multi", "scored", "user_pairwise", "prompts", "sft"):
        path = tmp_path / "data" / f"{fmt}.jsonl"
        n_lines = len(path.read_text().splitlines())
        ds = load_data(path, fmt)
        assert len(ds) == n_lines > 0, fmt
    multi = load_data(tmp_path / "data" / "pairwise_multi.jsonl", "pairwise_multi",
                      objectives=spec.objectives)
    assert set(multi.unique("better_helpful")) == {0, 1}
