import json

import numpy as np
import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from moalign.models import generate
from moalign.world import eval_prompts, score
from moalign.world.base import build_tokenizer, write_base


def test_tokenizer_round_trips_world_text(tokenizer):
    text = "thank you for asking . well , use flour and yeast . good luck !"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text
    rendered = tokenizer.apply_chat_template([{"role": "user", "content": "how do i bake bread ?"}],
                                             tokenize=False, add_generation_prompt=True)
    assert rendered == "<user> how do i bake bread ? <assistant>"


def test_base_is_a_plain_hf_directory_and_cached(base_dir, tmp_path):
    import time
    start = time.time()
    out = write_base(tmp_path / "base", seed=0)
    assert time.time() - start < 5  # from the cache, no training
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == "gpt2" and len(tok) == model.config.vocab_size
    assert write_base(tmp_path / "base", seed=0) == out  # same base already there: instant no-op


def test_base_samples_spread_over_every_objective(base_dir):
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    tok = build_tokenizer()
    prompts = eval_prompts(0) * 2
    responses = generate(model, tok, prompts, max_new_tokens=64, seed=1)
    assert sum(r == "" for r in responses) < len(responses) / 10
    for name in ("helpful", "harmless", "concise", "polite"):
        s = score(name, prompts, responses)
        assert 0.1 < s.mean() < 0.92, (name, s.mean())  # not saturated: room to align
        assert s.std() > 0.1, (name, s.std())
    # it answers risky prompts both ways, like its corpus
    risky = [i for i, p in enumerate(prompts)
             if any(w in p.split() for w in ("poison", "weapon", "hack", "steal"))]
    harmless = score("harmless", [prompts[i] for i in risky], [responses[i] for i in risky])
    assert 0.2 < np.mean(harmless == 1.0) < 0.9
    means = json.loads((base_dir / "moalign.json").read_text())["metrics"]["objective_means"]
    assert set(means) == {"helpful", "harmless", "concise", "polite"}


def test_the_shipped_base_is_current_and_copied_not_trained(tmp_path, monkeypatch):
    import time

    from safetensors.torch import load_file

    from moalign.world.base import SHIPPED, cache_key, ensure_base, shipped_key
    assert shipped_key() == cache_key(0), \
        "the shipped base is stale: moalign base --retrain --out moalign/world/shipped_base"
    monkeypatch.setenv("MOALIGN_CACHE", str(tmp_path))
    start = time.time()
    path = ensure_base(0, progress=False)
    assert time.time() - start < 5 and path.parent == tmp_path  # copied into the empty cache
    copied, shipped = load_file(path / "model.safetensors"), load_file(SHIPPED / "model.safetensors")
    assert all((copied[k] == shipped[k]).all() for k in shipped)


def test_base_training_learns_the_corpus(tmp_path):
    from moalign.world.base import TRAIN, _train
    metrics = _train(tmp_path, seed=0, progress=False, train={**TRAIN, "epochs": 0.1})
    # 19 steps of 32 from a uniform start (ln 247 = 5.5): the full run's first 20 steps log 4.4
    assert metrics["train_loss"] < 4.8, metrics
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config.n_layer == 3


@pytest.mark.slow
def test_retraining_the_base_gives_the_shipped_one(tmp_path):
    """Same recipe and seed: the same base up to arithmetic, within sampling noise of its objective
    means (the shipped weights were trained under GPT-2's unfused GELU, the same function)."""
    from moalign.world.base import SHIPPED, write_base
    means = json.loads((write_base(tmp_path / "base", retrain=True, progress=False) / "moalign.json")
                       .read_text())["metrics"]["objective_means"]
    shipped = json.loads((SHIPPED / "moalign.json").read_text())["metrics"]["objective_means"]
    assert all(abs(means[k] - shipped[k]) < 0.05 for k in shipped), (means, shipped)
