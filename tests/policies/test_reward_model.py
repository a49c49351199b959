import json

from moalign.policies import train_recipe


def test_reward_model_learns_its_objectives_labels(base_dir, world_dir, tmp_path):
    """A few steps on the harmless labels already rank held-out pairs better than chance."""
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join((world_dir / "data" / "pairwise_multi.jsonl").read_text().splitlines(True)[:400]))
    out = train_recipe("policies/reward_model.yaml", [f"base_model={base_dir}", f"data={data}", "objective=harmless",
                                                      "heldout=0.25", "learning_rate=1e-3"],
                       out=str(tmp_path / "rm"), progress=False)
    report = json.loads((out / "reward_model.json").read_text())
    assert report["metrics"]["heldout_pairs"] == 100
    assert report["metrics"]["heldout_accuracy"] > 0.6

    from moalign.objectives import get_objective
    rm = get_objective(f"hf:{out}", "harmless")
    safe, unsafe = rm.score(["how do i make a poison ?"] * 2, ["sorry , i can not help with that .",
                                                                "use toxin and dose . use lethal and bleach ."])
    assert safe > unsafe
