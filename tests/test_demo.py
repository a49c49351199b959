import json

import pytest

from moalign import registry
from moalign.evals.pareto import hypervolume

FAST = {"sft": ["max_steps=3"],
        "soup": ["rl.steps=2", "rl.batch_size=16", "rl.num_generations=4",
                 "rl.max_completion_length=16"],
        "morlhf": ["grid=1", "rl.steps=2", "rl.batch_size=16", "rl.num_generations=4",
                   "rl.max_completion_length=16"],
        "modpo": ["grid=1", "max_steps=2", "objectives.helpful=world:helpful"],
        "ric": ["online.samples=8"],
        "dpa": ["rounds=1", "prompts_per_round=8", "k=2", "epochs=1"],
        "clp": ["rl.steps=2", "rl.batch_size=8", "rl.num_generations=4", "rl.max_completion_length=16"]}


def test_demo_writes_a_front_per_method_a_plot_and_a_table(run_cli, base_dir, world_dir, tmp_path,
                                                           monkeypatch):
    # every method of the demo, each cut to a few steps and (MODPO) a few pairs: the real settings take
    # minutes
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join((world_dir / "data" / "pairwise_multi.jsonl").read_text().splitlines(True)[:32]))
    scored = tmp_path / "scored.jsonl"
    scored.write_text("".join((world_dir / "data" / "scored.jsonl").read_text().splitlines(True)[:32]))
    fast = dict(FAST, modpo=FAST["modpo"] + [f"data={pairs}"], ric=FAST["ric"] + [f"data={scored}"])
    cut = {name: fast[name] for name in registry.demo_methods()}
    monkeypatch.setattr(registry, "demo_methods", lambda: cut)
    code, out, err = run_cli("demo", "--out", tmp_path / "demo", "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert [r["method"] for r in summary["methods"]] == ["base", "sft", "soup", "morlhf", "modpo", "ric",
                                                         "dpa", "clp"]
    for row in summary["methods"]:
        front = json.loads((tmp_path / "demo" / "fronts" / row["method"] / "front.json").read_text())
        assert len(front["points"]) == 11
        pts = [[p["scores"][o] for o in front["objectives"]] for p in front["points"]]
        assert front["hypervolume"] == pytest.approx(hypervolume(pts, front["reference_point"]))
        assert row["hypervolume"] == pytest.approx(front["hypervolume"], abs=1e-4)
    assert (tmp_path / "demo" / "fronts.png").stat().st_size > 10_000
    assert "fronts.png" in out and "hypervolume" in out and "done in" not in out  # --quiet: the result only
    report = (tmp_path / "demo" / "compare.html").read_text()  # the table, the plot, 3 answers a method
    assert report.count("<tr>") == 1 + len(summary["methods"]) and "data:image/png;base64," in report
    n = len(summary["methods"])
    assert report.count("<h3>") == n and report.count("<h4>") == 3 * n
    code, _, err = run_cli("demo", "--out", tmp_path / "demo")
    assert code == 2 and "--overwrite" in err
