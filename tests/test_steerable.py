import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from moalign.errors import MoalignError
from moalign.files import atomic_dir
from moalign.steerable import FixedPolicy, Manifest, load_steerable


@pytest.fixture
def plain_dir(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2,
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id))
    d = tmp_path / "plain"
    model.save_pretrained(d)
    tokenizer.save_pretrained(d)
    return d


def test_plain_hf_dir_is_a_fixed_policy_that_ignores_preferences(plain_dir):
    policy = load_steerable(plain_dir)
    assert isinstance(policy, FixedPolicy) and policy.objectives == []
    prompts = ["how do i bake bread ?", "how do i fix my bike ?"]
    a = policy.generate(prompts, preference="helpful=1,harmless=0", max_new_tokens=8)
    b = policy.generate(prompts, preference={"anything": 1.0}, max_new_tokens=8)
    assert a == b and len(a) == 2
    with pytest.raises(MoalignError, match="negative"):
        policy.generate(prompts, preference="helpful=-1")
    with pytest.raises(MoalignError, match="knows no users"):
        policy.generate(prompts, user="alice")


def test_manifest_objectives_are_enforced(base_dir):
    policy = load_steerable(base_dir)
    assert policy.objectives == ["helpful", "harmless", "concise", "polite"]
    with pytest.raises(MoalignError, match="unknown objective 'kindness'"):
        policy.generate(["how do i bake bread ?"], preference="kindness=1")


def test_bad_checkpoint_dirs(tmp_path, plain_dir):
    with pytest.raises(MoalignError, match="no such checkpoint"):
        load_steerable(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MoalignError, match="no model weights"):
        load_steerable(tmp_path / "empty")
    Manifest(method="x", objectives=["a"], steering={"kind": "telepathy"}).write(plain_dir)
    with pytest.raises(MoalignError, match="unknown steering kind 'telepathy' \\(known: fixed"):
        load_steerable(plain_dir)
    (plain_dir / "moalign.json").write_text(json.dumps({"format_version": 1, "method": "x"}))
    with pytest.raises(MoalignError, match="missing objectives, steering"):
        load_steerable(plain_dir)


def test_atomic_dir_keeps_the_old_run_on_a_crash_and_refuses_non_empty(tmp_path):
    out = tmp_path / "run"
    with atomic_dir(out) as d:
        (d / "a.txt").write_text("first")
    with pytest.raises(RuntimeError):
        with atomic_dir(out, overwrite=True) as d:
            (d / "a.txt").write_text("half")
            raise RuntimeError("crash")
    assert (out / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary left behind
    with pytest.raises(MoalignError, match="not empty .*--overwrite"):
        with atomic_dir(out):
            pass
    with atomic_dir(out, overwrite=True) as d:
        (d / "b.txt").write_text("second")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
