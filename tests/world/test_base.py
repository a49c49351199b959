import json

import numpy as np
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
