"""Directional Preference Alignment: directions (arithmetic control), the released prompt format,
ridge reward heads on the frozen base, and a trained checkpoint on a HelpSteer-like file."""
import json
import math

import numpy as np
import pytest
import torch

from moalign.errors import MoalignError
from moalign.policies.dpa import Direction, conditioning, parse_preference, sample_directions
from moalign.preference import Preference

NAMES = ["helpful", "harmless"]
STEERING = {"kind": "prompt", "conditioner": "dpa", "objectives": NAMES}


def test_directions_from_angles_weights_and_preferences():
    assert parse_preference("angle=30", NAMES).weights.tolist() == pytest.approx([math.sqrt(3) / 2, 0.5])
    assert parse_preference("helpful=1,harmless=-1", NAMES).weights.tolist() == pytest.approx(
        [2 ** -0.5, -(2 ** -0.5)])
    simplex = Preference({"helpful": 0.75, "harmless": 0.25}, NAMES)
    assert parse_preference(simplex, NAMES).weights.tolist() == pytest.approx([3 / 10 ** 0.5, 1 / 10 ** 0.5])
    assert parse_preference([0, 2], NAMES).weights.tolist() == [0.0, 1.0]
    for bad in ("angle=north", "helpful=0,harmless=0", "polite=1"):
        with pytest.raises(MoalignError):
            parse_preference(bad, NAMES)
    with pytest.raises(MoalignError, match="two objectives"):
        parse_preference("angle=10", NAMES + ["concise"])


def test_prompt_is_the_released_models_format():
    assert conditioning(STEERING, parse_preference("angle=30", NAMES)) == \
        "Your response should maximize weighted rating = helpful*87 + harmless*50"
    assert conditioning(STEERING, parse_preference("angle=-45", NAMES)) == \
        "Your response should maximize weighted rating = helpful*71 + harmless*-71"
    # a simplex preference and its unit direction write the same prompt
    w = Preference({"helpful": 0.2, "harmless": 0.8}, NAMES)
    assert conditioning(STEERING, w) == conditioning(STEERING, Direction(w.as_dict(), NAMES))


def test_sampled_directions_are_unit_and_in_range():
    rng = np.random.default_rng(0)
    v = sample_directions(rng, NAMES, 500, (-45, 45))
    assert np.allclose(np.linalg.norm(v, axis=1), 1)
    angles = np.degrees(np.arctan2(v[:, 1], v[:, 0]))
    assert angles.min() >= -45 and angles.max() <= 45 and angles.min() < -40 and angles.max() > 40
    v3 = sample_directions(rng, ["a", "b", "c"], 100, None)
    assert np.allclose(np.linalg.norm(v3, axis=1), 1) and (v3 >= 0).all()


def test_ridge_heads_on_the_frozen_base_predict_world_scores(base_dir, world_dir):
    from moalign.policies.dpa import RidgeRewards

    rows = [json.loads(line) for line in open(world_dir / "data" / "scored.jsonl")]
    train, held = rows[:1500], rows[1500:]
    y = np.array([[r["score_helpful"], r["score_concise"]] for r in train])
    rm = RidgeRewards(str(base_dir)).fit([r["prompt"] for r in train], [r["response"] for r in train], y)
    pred = rm([r["prompt"] for r in held], [r["response"] for r in held])
    truth = np.array([[r["score_helpful"], r["score_concise"]] for r in held])
    corr = [np.corrcoef(pred[:, i], truth[:, i])[0, 1] for i in range(2)]
    assert min(corr) > 0.8, corr


def test_dpa_on_a_helpsteer_like_file(base_dir, world_dir, tmp_path):
    """Real-file path: HelpSteer-style columns, ridge reward heads, objectives under other names."""
    from moalign.policies import train_recipe
    from moalign.steerable import load_steerable

    rows = [json.loads(line) for line in open(world_dir / "data" / "scored.jsonl")][:400]
    path = tmp_path / "helpsteer.jsonl"
    path.write_text("".join(json.dumps({"question": r["prompt"], "answer": r["response"],
                                        "helpfulness": 4 * r["score_helpful"],
                                        "verbosity": 4 * (1 - r["score_concise"])}) + "\n" for r in rows))
    overrides = [f"base_model={base_dir}", f"data={path}", "reward=ridge", "rounds=1", "prompts_per_round=24",
                 "k=2", "epochs=1", f"prompts={world_dir}/data/prompts.jsonl",
                 "columns={prompt: question, response: answer, score_helpfulness: helpfulness, "
                 "score_verbosity: verbosity}",
                 "objectives={helpfulness: 'world:helpful', verbosity: 'world:concise'}"]
    out = train_recipe("policies/dpa.yaml", overrides, out=str(tmp_path / "dpa"), progress=False)
    manifest = json.loads((out / "moalign.json").read_text())
    assert manifest["objectives"] == ["helpfulness", "verbosity"]
    assert manifest["metrics"]["ridge_heldout_r2"]["helpfulness"] > 0.5
    policy = load_steerable(out)
    _, texts = policy.prepare(["a question"], "angle=-20")
    assert "helpfulness*94 + verbosity*-34" in texts[0]
    assert policy.tokenizer.unk_token_id not in policy.tokenizer(texts[0])["input_ids"]


def test_dpa_resumed_after_a_crash_equals_an_uninterrupted_run(base_dir, world_dir, tmp_path, stop_at):
    from safetensors.torch import load_file

    import moalign.training.sft as sft
    from moalign.policies import train_recipe
    overrides = [f"base_model={base_dir}", "rounds=3", "prompts_per_round=16", "k=2", "epochs=1",
                 f"prompts={world_dir}/data/prompts.jsonl"]
    whole = train_recipe("policies/dpa.yaml", overrides, out=str(tmp_path / "whole"), progress=False)
    calls = stop_at(sft, "train_sft", 3)  # stopped in round 3
    with pytest.raises(KeyboardInterrupt):
        train_recipe("policies/dpa.yaml", overrides, out=str(tmp_path / "dpa"), progress=False)
    out = train_recipe("policies/dpa.yaml", overrides, out=str(tmp_path / "dpa"), progress=False)
    assert len(calls) == 4  # rounds 1 and 2 were kept; the rerun trained round 3 only
    # the generator's state was restored, so the rerun drew round 3's prompts and directions as before
    a, b = load_file(whole / "model.safetensors"), load_file(out / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rounds = [json.loads((d / "moalign.json").read_text())["metrics"]["rounds"] for d in (whole, out)]
    assert rounds[0] == rounds[1] and len(rounds[0]) == 3
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in whole.iterdir())


@pytest.mark.slow
def test_dpa_recipe_steers_helpful_against_concise(tmp_path):
    """DPA in its paper's setting (helpfulness vs verbosity): Spearman(w_i, score_i) per objective."""
    from moalign.config import load_suite
    from moalign.evals.front import trace_front
    from moalign.policies import train_recipe
    from moalign.steerable import load_steerable

    out = train_recipe("policies/dpa_concise.yaml", out=str(tmp_path / "dpa"), progress=False)
    front = trace_front(load_steerable(out), load_suite("evals/world_concise.yaml"), progress=False)
    assert min(front["steerability"].values()) >= 0.8, front["steerability"]
