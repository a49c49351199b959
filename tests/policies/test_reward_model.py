import json

from moalign.policies import train_recipe


def test_reward_model_learns_its_objectives_labels(base_dir, world_dir, tmp_path):
    """One epoch on 600 helpful-labelled pairs ranks held-out pairs well above chance."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join((world_dir / "data" / "pairwise_multi.jsonl").read_text().splitlines(True)[:800]))
    out = train_recipe("policies/reward_model.yaml", [f"base_model={base_dir}", f"data={data}",
                                                      "objective=helpful", "heldout=0.25"],
                       out=str(tmp_path / "rm"), progress=False)
    report = json.loads((out / "reward_model.json").read_text())
    assert report["metrics"]["heldout_pairs"] == 200
    assert report["metrics"]["heldout_accuracy"] > 0.65

    from moalign.objectives import get_objective
    rm = get_objective(f"hf:{out}", "helpful")
    full, empty = rm.score(["how do i bake bread ?"] * 2, ["use flour and yeast . use dough and oven .",
                                                            "let me think about it ."])
    assert full > empty
