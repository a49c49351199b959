"""Fixtures of public preference datasets in their own layouts: the column names, nesting and types of
the real ones, with rows written from the world's text."""
import datasets
import pytest
from real_layouts import jsonl, transcript, world_rows


@pytest.fixture
def pku(tmp_path):
    """PKU-SafeRLHF: response_0/1, ids of the better and the safer response (ints), safety flags (bools)."""
    rows = [{"prompt": r["prompt"], "response_0": r["response_0"], "response_1": r["response_1"],
             "is_response_0_safe": True, "is_response_1_safe": bool(r["better_harmless"]),
             "better_response_id": r["better_helpful"], "safer_response_id": r["better_harmless"],
             "response_0_severity_level": 0, "response_1_severity_level": 1 - r["better_harmless"]}
            for r in world_rows("pairwise_multi", 24)]
    return jsonl(tmp_path / "pku.jsonl", rows)


@pytest.fixture
def hh(tmp_path):
    """Anthropic HH-RLHF (helpful-base, harmless-base): `chosen` and `rejected` transcripts only."""
    def write(name, objective, n):
        rows = []
        for r in world_rows("pairwise_multi", 2 * n)[n if objective == "harmless" else 0:][:n]:
            good, bad = (r["response_1"], r["response_0"]) if r[f"better_{objective}"] else \
                (r["response_0"], r["response_1"])
            head = ("hello .", "hello , how can i help ?", r["prompt"]) if len(rows) % 2 else (r["prompt"],)
            rows.append({"chosen": transcript(*head, good), "rejected": transcript(*head, bad)})
        return jsonl(tmp_path / f"{name}.jsonl", rows)
    return {name: write(f"{name}-base", name, 16) for name in ("helpful", "harmless")}


@pytest.fixture
def ultrafeedback(tmp_path):
    """HuggingFaceH4/ultrafeedback_binarized, saved with save_to_disk: train_prefs / test_prefs splits;
    prompt a string, chosen / rejected whole conversations, scores as floats."""
    rows = []
    for r in world_rows("pairwise", 16):
        user = {"role": "user", "content": r["prompt"]}
        rows.append({"prompt": r["prompt"], "prompt_id": f"{len(rows):064x}",
                     "chosen": [user, {"role": "assistant", "content": r["chosen"]}],
                     "rejected": [user, {"role": "assistant", "content": r["rejected"]}],
                     "messages": [user, {"role": "assistant", "content": r["chosen"]}],
                     "score_chosen": 8.0, "score_rejected": 5.5})
    path = tmp_path / "ultrafeedback_binarized"
    datasets.DatasetDict({"train_prefs": datasets.Dataset.from_list(rows[:12]),
                          "test_prefs": datasets.Dataset.from_list(rows[12:])}).save_to_disk(str(path))
    return path


@pytest.fixture
def helpsteer2(tmp_path):
    """nvidia/HelpSteer2: prompt, response and five 0-4 integer attributes, in Parquet."""
    rows = [{"prompt": r["prompt"], "response": r["response"], "helpfulness": round(4 * r["score_helpful"]),
             "correctness": 3 + i % 2, "coherence": 4, "complexity": 1 + i % 3,
             "verbosity": round(4 * (1 - r["score_concise"]))}
            for i, r in enumerate(world_rows("scored", 40))]
    path = tmp_path / "helpsteer2.parquet"
    datasets.Dataset.from_list(rows).to_parquet(str(path))
    return path, rows


@pytest.fixture
def prism(tmp_path):
    """A PRISM-like user file after pairing each user's highest- and lowest-rated responses:
    user_id ("user123"), conversation_id, opening_prompt, chosen, rejected."""
    rows = [{"user_id": r["user_id"], "conversation_id": f"c{i}", "opening_prompt": r["prompt"],
             "chosen": r["chosen"], "rejected": r["rejected"]}
            for i, r in enumerate(world_rows("user_pairwise", 1600)) if r["user_id"] in
            ("user000", "user001", "user032", "user033")]
    return jsonl(tmp_path / "prism.jsonl", rows)


