import json

import pytest

from moalign.evals.pareto import hypervolume


def test_demo_writes_a_front_per_method_a_plot_and_a_table(run_cli, base_dir, tmp_path):
    code, out, err = run_cli("demo", "--out", tmp_path / "demo", "--quiet")
    assert code == 0, err
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    methods = [r["method"] for r in summary["methods"]]
    assert methods[0] == "base" and "sft" in methods
    for row in summary["methods"]:
        front = json.loads((tmp_path / "demo" / "fronts" / row["method"] / "front.json").read_text())
        pts = [[p["scores"][o] for o in front["objectives"]] for p in front["points"]]
        assert front["hypervolume"] == pytest.approx(hypervolume(pts, front["reference_point"]))
        assert row["hypervolume"] == pytest.approx(front["hypervolume"], abs=1e-4)
    assert (tmp_path / "demo" / "fronts.png").stat().st_size > 10_000
    assert "fronts.png" in out and "hypervolume" in out
    code, _, err = run_cli("demo", "--out", tmp_path / "demo")
    assert code == 2 and "--overwrite" in err
