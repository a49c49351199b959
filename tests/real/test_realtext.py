"""The real-text suite's data builder, run on the tiny Llama: every format loads, labels follow the
scorers, users are P-Soups' eight profiles, and an interrupted build resumes without resampling."""
import json

import numpy as np
import pytest

from moalign.realtext import RealSizes, build_real, profiles

SIZES = RealSizes(prompts=8, eval_prompts=4, responses_per_prompt=2, max_new_tokens=6)


@pytest.fixture(scope="module")
def real_dir(tiny_llama, tmp_path_factory):
    out = tmp_path_factory.mktemp("real")
    build_real(out, str(tiny_llama), seed=0, sizes=SIZES, progress=False)
    return out


def test_every_format_loads_and_labels_follow_the_scores(real_dir):
    from moalign.data import load_data
    from moalign.objectives import get_objective
    spec = json.loads((real_dir / "real.json").read_text())
    fmt = {"prompts": "prompts", "eval_prompts": "prompts", "sft": "sft", "scored": "scored",
           "pairwise": "pairwise", "pairwise_multi": "pairwise_multi", "user_pairwise": "user_pairwise"}
    lengths = {name: len(load_data(str(real_dir / path), fmt[name])) for name, path in spec["files"].items()}
    assert lengths == {"prompts": 8, "eval_prompts": 4, "sft": 16, "scored": 16, "pairwise": 8,
                       "pairwise_multi": 8, "user_pairwise": 8}
    scored = [json.loads(line) for line in open(real_dir / spec["files"]["scored"])]
    for pole in ("concise", "friendly", "expert"):
        want = get_objective(f"text:{pole}").score([r["prompt"] for r in scored],
                                                   [r["response"] for r in scored])
        np.testing.assert_allclose([r[f"score_{pole}"] for r in scored], want, atol=1e-6)
    users = {json.loads(line)["user_id"] for line in open(real_dir / spec["files"]["user_pairwise"])}
    assert users == {p["id"] for p in profiles()} and len(profiles()) == 8
    assert {tuple(sorted(p["weights"])) for p in profiles()} >= {("concise", "expert", "friendly")}


def test_an_interrupted_build_resumes_from_its_chunks(tiny_llama, tmp_path, stop_at):
    import moalign.models as models
    from moalign.realtext import build as build_module
    calls = stop_at(models, "generate_rendered", 2)
    sizes = RealSizes(prompts=40, eval_prompts=2, responses_per_prompt=2, max_new_tokens=4)  # 2 chunks
    with pytest.raises(KeyboardInterrupt):
        build_module.build_real(tmp_path, str(tiny_llama), sizes=sizes, progress=False)
    assert len(list((tmp_path / "chunks").iterdir())) == 1
    build_module.build_real(tmp_path, str(tiny_llama), sizes=sizes, progress=False)
    assert len(calls) == 3  # the first chunk was not sampled again
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    build_module.build_real(fresh, str(tiny_llama), sizes=sizes, progress=False)
    assert (fresh / "data" / "scored.jsonl").read_text() == (tmp_path / "data" / "scored.jsonl").read_text()
