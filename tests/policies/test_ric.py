"""Rewards-in-Context: the preference -> target map against the paper's formula, the online target
sampler, and a trained checkpoint that steers through its prompt."""
import json
import math

import numpy as np
import pytest

from moalign.errors import MoalignError
from moalign.policies.ric import boundary_targets, format_targets, targets


def test_paper_map_hand_computed():
    # argmax gets high; the others low + min(n w_i, 1) (high - low)
    assert targets([0.7, 0.3], [-2, -1], [2, 3]).tolist() == pytest.approx([2.0, 1.4])
    assert targets([0.2, 0.5, 0.3], [0, 0, 0], [1, 1, 1]).tolist() == pytest.approx([0.6, 1.0, 0.9])
    assert targets([0.1, 0.1, 0.8], [0, -1, 0], [1, 1, 2]).tolist() == pytest.approx([0.3, -0.4, 2.0])
    assert targets([0.5, 0.5], [0, 0], [1, 1]).tolist() == pytest.approx([1.0, 1.0])  # w_i >= 1/n saturates


def test_l2_map_hand_computed():
    # w / ||w||_2 for (3/4, 1/4) is (3, 1) / sqrt(10)
    got = targets([0.75, 0.25], [-1, -1], [1, 1], map="l2")
    assert got.tolist() == pytest.approx([-1 + 2 * 3 / math.sqrt(10), -1 + 2 / math.sqrt(10)])
    assert targets([1.0, 0.0], [0, 0], [2, 2], map="l2").tolist() == pytest.approx([2.0, 0.0])
    with pytest.raises(MoalignError):
        targets([1.0, 0.0], [0, 0], [1, 1], map="cubic")


def test_format_rounds_to_one_decimal_without_negative_zero():
    assert format_targets(["helpful", "harmless"], [-0.04, -1.249]) == "helpful 0.0 harmless -1.2"


def test_boundary_targets_raise_all_but_one_dimension():
    low, high = np.array([-1.0, 0.0, -2.0]), np.array([1.0, 2.0, 0.5])
    t = boundary_targets(np.random.default_rng(0), 200, low, high)
    at_high = np.isclose(t, high)
    assert (at_high.sum(1) >= 2).all() and ((t >= low) & (t <= high)).all()
    assert set(np.argmin(at_high, axis=1)) == {0, 1, 2}  # each dimension is the free one sometimes


def test_ric_trains_a_prompt_steered_checkpoint(base_dir, world_dir, tmp_path):
    from moalign.policies import train_recipe
    from moalign.steerable import load_steerable

    rows = [json.loads(line) for line in open(world_dir / "data" / "scored.jsonl")][:400]
    data = tmp_path / "scored.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = train_recipe("policies/ric.yaml", [f"base_model={base_dir}", f"data={data}", "epochs=1",
                                             "online.samples=32",
                                             f"online.prompts={world_dir}/data/prompts.jsonl"],
                       out=str(tmp_path / "ric"), progress=False)
    policy = load_steerable(out)
    steering = json.loads((out / "moalign.json").read_text())["steering"]
    helpful = np.array([r["score_helpful"] for r in rows])
    assert steering["mean"][0] == pytest.approx(helpful.mean())
    assert steering["low"][0] == pytest.approx((helpful.min() - helpful.mean()) / helpful.std())
    _, texts = policy.prepare(["a question"], {"helpful": 1.0, "harmless": 0.0})
    expected = format_targets(["helpful", "harmless"], [steering["high"][0], steering["low"][1]])
    assert expected in texts[0] and policy.system_text("helpful=1,harmless=0") == expected
    assert policy.tokenizer.unk_token_id not in policy.tokenizer(texts[0])["input_ids"]
    import torch
    logits = []
    for pref in ("helpful=1,harmless=0", "helpful=0,harmless=1"):  # the preference reaches the model
        model, texts = policy.prepare(["tell me about the weather"], pref)
        with torch.no_grad():
            logits.append(model(**policy.tokenizer(texts, return_tensors="pt")).logits[0, -1])
    assert (logits[0] - logits[1]).abs().max() > 1e-3

    # exported for one preference, the model's chat template writes that preference's system text
    from moalign.models import load_tokenizer
    from moalign.soups.merge import export
    path = export(policy, "helpful=1,harmless=0", tmp_path / "exported")
    chat = [{"role": "user", "content": "tell me about the weather"}]
    rendered = load_tokenizer(path).apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    assert rendered == policy.prepare(["tell me about the weather"], "helpful=1,harmless=0")[1][0]
    policy.tokenizer.chat_template = None
    with pytest.raises(MoalignError, match="no chat template"):
        export(policy, "helpful=1,harmless=0", tmp_path / "plain")


def test_ric_resumed_after_a_crash_equals_an_uninterrupted_run(base_dir, world_dir, tmp_path, stop_at):
    import torch
    from safetensors.torch import load_file

    import moalign.training.sft as sft
    from moalign.policies import train_recipe
    rows = [json.loads(line) for line in open(world_dir / "data" / "scored.jsonl")][:200]
    data = tmp_path / "scored.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = [f"base_model={base_dir}", f"data={data}", "epochs=1", "online.samples=16",
                 "online.iterations=2", f"online.prompts={world_dir}/data/prompts.jsonl"]
    whole = train_recipe("policies/ric.yaml", overrides, out=str(tmp_path / "whole"), progress=False)
    calls = stop_at(sft, "train_sft", 3)  # stopped in the second online stage
    with pytest.raises(KeyboardInterrupt):
        train_recipe("policies/ric.yaml", overrides, out=str(tmp_path / "ric"), progress=False)
    out = train_recipe("policies/ric.yaml", overrides, out=str(tmp_path / "ric"), progress=False)
    assert len(calls) == 4  # the offline stage and the first online one were kept
    a, b = load_file(whole / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    stages = [json.loads((d / "moalign.json").read_text())["metrics"]["stages"] for d in (whole, out)]
    assert stages[0] == stages[1] and len(stages[0]) == 3


@pytest.mark.slow
def test_ric_recipe_steers_each_objective(tmp_path):
    """The recipe as shipped: Spearman(w_i, score_i) >= 0.8 on each objective of the world suite."""
    from moalign.config import load_suite
    from moalign.evals.front import trace_front
    from moalign.policies import train_recipe
    from moalign.steerable import load_steerable

    out = train_recipe("policies/ric.yaml", out=str(tmp_path / "ric"), progress=False)
    front = trace_front(load_steerable(out), load_suite("evals/world.yaml"), progress=False)
    assert min(front["steerability"].values()) >= 0.8, front["steerability"]


def test_ric_reads_a_helpsteer_like_file(base_dir, world_dir, tmp_path):
    """Real-file path: scores come from renamed rating columns; an objective without a column is an error
    (it was scored by its objective, silently)."""
    from moalign.errors import MoalignError
    from moalign.policies import train_recipe

    rows = [json.loads(line) for line in open(world_dir / "data" / "scored.jsonl")][:200]
    path = tmp_path / "helpsteer.jsonl"
    path.write_text("".join(json.dumps({"question": r["prompt"], "answer": r["response"],
                                        "helpfulness": 4 * r["score_helpful"],
                                        "brevity": r["score_concise"]}) + "\n" for r in rows))
    columns = "columns={prompt: question, response: answer, score_helpfulness: helpfulness}"
    recipe = [f"base_model={base_dir}", f"data={path}", "epochs=1", "online.iterations=0",
              "objectives={helpfulness: 'world:helpful', concise: 'world:concise'}"]
    with pytest.raises(MoalignError, match="score_concise"):
        train_recipe("policies/ric.yaml", [*recipe, columns], out=str(tmp_path / "ric"), progress=False)
    columns = columns.replace("}", ", score_concise: brevity}")
    out = train_recipe("policies/ric.yaml", [*recipe, columns], out=str(tmp_path / "ric"), progress=False)
    steering = json.loads((out / "moalign.json").read_text())["steering"]
    assert steering["objectives"] == ["helpfulness", "concise"]
    assert steering["mean"][0] == pytest.approx(4 * np.mean([r["score_helpful"] for r in rows]))
    assert steering["mean"][1] == pytest.approx(np.mean([r["score_concise"] for r in rows]))
