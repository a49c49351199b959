"""Training soups and MORLHF fronts end to end, a few steps each (the full runs are in the README)."""
import time

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from moalign.policies import train_recipe
from moalign.steerable import load_steerable

FAST_RL = ["rl.steps=2", "rl.batch_size=16", "rl.num_generations=4",
           "rl.max_completion_length=16"]


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def test_grpo_soup_experts_train_and_differ(base_dir, tmp_path):
    out = train_recipe("soups/world.yaml", [f"base_model={base_dir}", *FAST_RL, "rl.learning_rate=1e-3"],
                       out=str(tmp_path / "soup"), progress=False)
    soup = load_steerable(out)
    assert soup.kind == "interpolation" and soup.objectives == ["helpful", "harmless"]
    base = _flat(AutoModelForCausalLM.from_pretrained(base_dir))
    helpful, harmless = (_flat(AutoModelForCausalLM.from_pretrained(p)) for p in soup.anchor_paths)
    # the official repo's pitfall: experts that never moved give a flat front
    assert (helpful - base).abs().max() > 1e-4 and (harmless - base).abs().max() > 1e-4
    assert (helpful - harmless).abs().max() > 1e-4
    assert torch.equal(_flat(soup.model_for("helpful=1")), helpful)
    mid = _flat(soup.model_for("helpful=0.5,harmless=0.5"))
    torch.testing.assert_close(mid, (helpful + harmless) / 2, rtol=0, atol=1e-6)
    assert soup.manifest.metrics["train_seconds"] > 0


def test_lora_dpo_soup_is_peft_cat_combination(base_dir, tmp_path):
    start = time.time()
    out = train_recipe("soups/world_dpo.yaml", [f"base_model={base_dir}", "dpo.max_steps=3",
                                                "dpo.batch_size=8", "dpo.learning_rate=5e-3",
                                                "lora.r=4", "lora.alpha=8"],
                       out=str(tmp_path / "soup"), progress=False)
    wall = time.time() - start
    soup = load_steerable(out)
    # train_seconds is the whole training (loading, pairs, saving), not the trainers' train() calls
    assert 0.9 * wall <= soup.manifest.metrics["train_seconds"] <= wall + 0.01  # rounded to 0.01 s
    assert soup.manifest.steering["semantics"] == "lora-cat"
    assert all((p / "adapter_config.json").exists() for p in soup.anchor_paths)
    w = {"helpful": 0.3, "harmless": 0.7}
    mixed = dict(soup.model_for(w).named_parameters())
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir),
                                      str(soup.anchor_paths[0]), adapter_name="helpful")
    model.load_adapter(str(soup.anchor_paths[1]), adapter_name="harmless")
    model.add_weighted_adapter(["helpful", "harmless"], [0.3, 0.7], adapter_name="mix",
                               combination_type="cat")
    model.set_adapter("mix")
    reference = dict(model.merge_and_unload(adapter_names=["mix"]).named_parameters())
    moved = 0
    for k, v in reference.items():
        torch.testing.assert_close(mixed[k], v, rtol=0, atol=1e-6)
        moved += not torch.equal(v,
                                 dict(AutoModelForCausalLM.from_pretrained(base_dir).named_parameters())[k])
    assert moved > 0


def test_morlhf_front_interpolates_between_trained_points(base_dir, tmp_path):
    overrides = [f"base_model={base_dir}", "grid=2"] + FAST_RL
    out = train_recipe("policies/morlhf.yaml", overrides, out=str(tmp_path / "morlhf"), progress=False)
    front = load_steerable(out)
    assert [a.as_dict()["helpful"] for a in front.anchor_prefs] == pytest.approx([0.0, 0.5, 1.0])
    assert len(front.manifest.metrics["point_seconds"]) == 3
    lo, mid = (_flat(AutoModelForCausalLM.from_pretrained(p)) for p in front.anchor_paths[:2])
    quarter = _flat(front.model_for("helpful=0.25,harmless=0.75"))
    torch.testing.assert_close(quarter, (lo + mid) / 2, rtol=0, atol=1e-6)
    assert torch.equal(_flat(front.model_for("helpful=0.5,harmless=0.5")), mid)


def test_morlhf_resumes_after_a_crash_without_retraining_finished_points(base_dir, tmp_path, stop_at):
    import moalign.training.rl as rl
    calls = stop_at(rl, "train_rl", 2)  # the user stops the second point
    overrides = [f"base_model={base_dir}", "grid=1"] + FAST_RL
    with pytest.raises(KeyboardInterrupt):
        train_recipe("policies/morlhf.yaml", overrides, out=str(tmp_path / "m"), progress=False)
    first = _flat(AutoModelForCausalLM.from_pretrained(tmp_path / ".m.partial" / "points" / "00"))
    out = train_recipe("policies/morlhf.yaml", overrides, out=str(tmp_path / "m"), progress=False)
    assert [c[2] for c in calls] == [[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]  # point 00 was not trained again
    front = load_steerable(out)
    assert torch.equal(_flat(AutoModelForCausalLM.from_pretrained(front.anchor_paths[0])), first)
    seconds = front.manifest.metrics
    assert all(s > 0 for s in seconds["point_seconds"])  # the kept point's seconds too
    # the crashed attempt's kept point counts (each number rounded to 0.01 s)
    assert seconds["train_seconds"] >= sum(seconds["point_seconds"]) - 0.02


def test_morlhfs_vertices_are_the_soups_experts_and_train_once(base_dir, tmp_path, monkeypatch):
    """MORLHF's point at w = (1, 0) is RL on helpful alone (a reward at weight 0 is not scored), the
    soup's expert: inside `compare` (files.sharing) it trains once, and the copy has the bytes the
    soup's own training writes."""
    import moalign.training.rl as rl
    from moalign.files import sharing
    alone = train_recipe("soups/world.yaml", [f"base_model={base_dir}", *FAST_RL],
                         out=str(tmp_path / "alone"), progress=False)
    calls = []
    real = rl.train_rl
    with sharing(tmp_path / "shared"):
        morlhf = train_recipe("policies/morlhf.yaml", [f"base_model={base_dir}", "grid=2", *FAST_RL],
                              out=str(tmp_path / "morlhf"), progress=False)
        monkeypatch.setattr(rl, "train_rl", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
        soup = train_recipe("soups/world.yaml", [f"base_model={base_dir}", *FAST_RL],
                            out=str(tmp_path / "soup"), progress=False)
    assert calls == [] and len(list((tmp_path / "shared").iterdir())) == 3  # MORLHF's points
    for name, point in (("helpful", "02"), ("harmless", "00")):
        weights = (alone / "experts" / name / "model.safetensors").read_bytes()
        assert (soup / "experts" / name / "model.safetensors").read_bytes() == weights
        assert (morlhf / "points" / point / "model.safetensors").read_bytes() == weights
    seconds = load_steerable(morlhf).manifest.metrics["point_seconds"]
    assert load_steerable(soup).manifest.metrics["expert_seconds"] == {"helpful": seconds[2],
                                                                       "harmless": seconds[0]}


@pytest.mark.slow
def test_reproduce_soup_vs_morlhf_helpful_harmless(base_dir, tmp_path):
    """The README's headline for soups (about 12 minutes on 2 cores): at the same 6 preferences,
    the soup's front has at least 0.9x the hypervolume of MORLHF's, for a third of the RL runs."""
    from moalign.config import load_suite
    from moalign.evals.front import trace_front
    from moalign.preference import grid

    soup = load_steerable(train_recipe("soups/world.yaml", [f"base_model={base_dir}"],
                                       out=str(tmp_path / "soup"), progress=False))
    morlhf = load_steerable(train_recipe("policies/morlhf.yaml", [f"base_model={base_dir}", "grid=5"],
                                         out=str(tmp_path / "morlhf"), progress=False))
    suite = load_suite("evals/world.yaml")
    prefs = grid(["helpful", "harmless"], 5)
    hv = {name: trace_front(p, suite, preferences=prefs, progress=False)["hypervolume"]
          for name, p in (("soup", soup), ("morlhf", morlhf))}
    assert hv["soup"] >= 0.9 * hv["morlhf"], hv
