"""`moalign compare`: recipes get the suite's objectives, rows get ratios and claims, a run resumes."""
import json

import pytest

from moalign.compare import suite_overrides, table
from moalign.registry import REGISTRY

THREE = {"helpful": "world:helpful", "harmless": "world:harmless", "concise": "world:concise"}


def test_suite_objectives_and_the_equal_budget_rule_reach_the_recipes():
    assert suite_overrides("clp", THREE) == ["objectives=" + json.dumps(THREE), "rl.steps=450"]
    assert "grid=2" in suite_overrides("morlhf", THREE)
    assert suite_overrides("modpo", THREE) == [
        'objectives={"helpful": "dpo", "harmless": "dpo", "concise": "dpo"}', "train_on=harmless", "grid=2"]
    from moalign.policies import load_recipe
    for method, recipe in (("clp", "policies/clp.yaml"), ("modpo", "policies/modpo.yaml"),
                           ("ric", "policies/ric.yaml"), ("soup", "soups/world.yaml"),
                           ("morlhf", "policies/morlhf.yaml"), ("dpa", "policies/dpa.yaml"),
                           ("sft", "policies/sft.yaml")):
        _, cfg = load_recipe(recipe, suite_overrides(method, THREE))  # every override validates
        names = list(cfg.objectives)
        assert names == list(THREE), method


def front(method, hv, train, steer=(0.9, 0.9)):
    return {"method": method, "hypervolume": hv, "points": [{"scores": {"a": 0.5, "b": 0.5}}],
            "pareto_indices": [0], "compute": {"train_seconds": train, "eval_seconds": 1.0},
            "steerability": dict(zip("ab", steer))}


def test_rows_carry_ratios_and_whether_each_claim_held():
    rows = {r["method"]: r for r in table([front("morlhf", 0.8, 600), front("soup", 0.76, 150),
                                           front("modpo", 0.78, 300), front("ric", 0.7, 60),
                                           front("dpa", 0.6, 100, (0.9, 0.3)), front("clp", 0.8, 200)])}
    assert rows["soup"]["hv_vs_morlhf"] == 0.95 and rows["soup"]["claim_held"] is True
    assert rows["modpo"]["hv_vs_morlhf"] == pytest.approx(0.975) and rows["modpo"]["train_vs_morlhf"] == 0.5
    assert rows["modpo"]["claim_held"] is False  # good front, too expensive
    assert rows["ric"]["claim_held"] is False and rows["ric"]["train_vs_morlhf"] == 0.1
    assert rows["dpa"]["claim_held"] is False
    assert rows["clp"]["hv_vs_soup"] == pytest.approx(1.053) and rows["clp"]["claim_held"] is True
    assert "claim" not in rows["morlhf"] and {m.name for m in REGISTRY if m.claim} == {
        "soup", "modpo", "ric", "dpa", "clp"}
    base = table([front("base", 0.3, 1128), front("morlhf", 0.8, 600)])[0]
    assert base["train_seconds"] is None and "train_vs_morlhf" not in base  # its SFT is no method's cost
    # without MORLHF there is nothing to compare with
    assert table([front("modpo", 0.78, 300)])[0]["claim_held"] is None


def test_compare_writes_table_and_resumes(run_cli, base_dir, world_dir, tmp_path, pal_dir):
    import shutil
    out = tmp_path / "cmp"
    (out / "runs").mkdir(parents=True)
    shutil.copytree(pal_dir, out / "runs" / "pal")  # a finished method is reused, not retrained
    code, stdout, err = run_cli("compare", "evals/world.yaml", "--methods", "sft,pal", "--out", out, "-q",
                                "--set", "sft.max_steps=2")
    assert code == 0, err
    summary = json.loads((out / "compare.json").read_text())
    assert [r["method"] for r in summary["methods"]] == ["base", "sft"]
    assert (summary["personalization"]["pal"]["seen_vs_oracle"] ==
            json.loads((pal_dir / "pal.json").read_text())["seen_vs_oracle"])
    assert "| sft |" in stdout and "PAL" in (out / "compare.md").read_text()
    assert (out / "fronts.png").stat().st_size > 10_000
    mtimes = {m: (out / "fronts" / m / "front.json").stat().st_mtime for m in ("sft", "base")}
    code, _, err = run_cli("compare", "evals/world.yaml", "--methods", "sft", "--out", out, "-q")
    assert code == 0, err
    assert {m: (out / "fronts" / m / "front.json").stat().st_mtime for m in mtimes} == mtimes  # reused
    code, _, err = run_cli("compare", "evals/world.yaml", "--methods", "sft", "--out", out,
                           "--set", "soup.x=1")
    assert code == 2 and "METHOD.KEY=VALUE" in err
    code, _, err = run_cli("compare", "evals/world.yaml", "--methods", "nope", "--out", out)
    assert code == 2 and "unknown method" in err
