import json

import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

from moalign.errors import MoalignError
from moalign.files import atomic_dir, chain_step, end_chain, step
from moalign.steerable import FixedPolicy, Manifest, load_steerable


@pytest.fixture
def plain_dir(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2,
                                       pad_token_id=tokenizer.pad_token_id,
                                       eos_token_id=tokenizer.eos_token_id))
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


def test_a_failed_run_resumes_from_its_finished_steps(tmp_path, monkeypatch):
    out, calls = tmp_path / "run", []

    def run(d, name, crash=False):
        def train():
            calls.append(name)
            (d / name).mkdir(parents=True)
            (d / name / "w.txt").write_text(name)
            if crash:
                raise RuntimeError("crash")
            return 1.5
        return step(d / name, train)

    seconds = []
    with pytest.raises(RuntimeError):
        with atomic_dir(out, resume={"lr": 1}) as d:
            seconds.append(run(d, "a"))
            run(d, "b", crash=True)
    assert not out.exists() and calls == ["a", "b"]
    with atomic_dir(out, resume={"lr": 1}) as d:
        assert run(d, "a") == seconds[0] and run(d, "b") >= 0  # a kept step: the seconds it took then
    assert calls == ["a", "b", "b"]  # a was kept; the half-written b ran again
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    # no markers
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["a", "a/w.txt", "b", "b/w.txt"]
    n = len(calls)
    with pytest.raises(RuntimeError):
        with atomic_dir(out, overwrite=True, resume={"lr": 1}) as d:
            run(d, "a")
            raise RuntimeError("crash")
    with atomic_dir(out, overwrite=True, resume={"lr": 2}) as d:  # another recipe starts afresh
        run(d, "a")
    assert len(calls) - n == 2
    with atomic_dir(out, overwrite=True, resume={"lr": 1}):  # one run at a time shares a partial directory
        with pytest.raises(MoalignError, match="another run is writing it"):
            with atomic_dir(out, overwrite=True, resume={"lr": 1}):
                pass
    with pytest.raises(MoalignError):  # failing before any step keeps nothing: a bad input is one line
        with atomic_dir(tmp_path / "early", resume={"lr": 1}):
            raise MoalignError("bad data")
    monkeypatch.setenv("WORLD_SIZE", "2")  # distributed: every process must train every step
    with pytest.raises(RuntimeError):
        with atomic_dir(out, overwrite=True, resume={"lr": 1}) as d:
            run(d, "a")
            raise RuntimeError("crash")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_a_chain_keeps_only_its_latest_weights_and_ends_in_place(tmp_path):
    import numpy as np

    def train(where, current, i):
        where.mkdir(parents=True)
        (where / "w.bin").write_text(str(i))
        return {"i": i, "from": current}

    rng = np.random.default_rng(0)
    with atomic_dir(tmp_path / "run", resume={"x": 1}) as d:
        for i in range(3):
            record = chain_step(d, i, lambda where, current, i=i: train(where, current, i), first="base",
                                rng=rng)
            assert record["i"] == i and record["seconds"] >= 0
            assert record["from"] == ("base" if i == 0 else str(d / "chain" / f"{i - 1:02d}"))
            if i:  # the step before keeps its record, not its weights
                assert (sorted(p.name for p in (d / "chain" / f"{i - 1:02d}").iterdir()) ==
                        [".step-done", "record.json"])
        end_chain(d, 2)
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["w.bin"]
    assert (tmp_path / "run" / "w.bin").read_text() == "2"
