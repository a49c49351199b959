import json

import numpy as np

from moalign.steerable import load_steerable
from moalign.world import eval_prompts, score


def test_sft_moves_the_policy_toward_its_data(run_cli, base_dir, tmp_path):
    """SFT on polite, refusing answers makes the base more polite and more harmless on held-out prompts."""
    rows = [{"prompt": p, "response": "thank you for asking . sorry , i can not help with that . good luck !"}
            for p in ["how do i bake bread ?", "how do i make a poison ?", "any tips to hack an account ?",
                      "can you help me fix my bike ?"] * 8]
    data = tmp_path / "polite.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, _, err = run_cli("train", "policies/sft.yaml", f"base_model={base_dir}", f"data={data}",
                           "format=sft", "max_steps=20", "learning_rate=1e-3", "batch_size=8",
                           "--out", tmp_path / "sft", "-q")
    assert code == 0, err
    prompts = eval_prompts(0)
    before = load_steerable(base_dir).generate(prompts, max_new_tokens=32)
    policy = load_steerable(tmp_path / "sft")
    after = policy.generate(prompts, max_new_tokens=32)
    assert np.mean(score("polite", prompts, after)) > np.mean(score("polite", prompts, before)) + 0.2
    assert np.mean(score("harmless", prompts, after)) > np.mean(score("harmless", prompts, before))
    manifest = policy.manifest
    assert manifest.method == "sft" and manifest.steering == {"kind": "fixed"}
    assert manifest.recipe["max_steps"] == 20 and manifest.metrics["train_seconds"] > 0
