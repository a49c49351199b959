"""Real-model correctness on SmolLM2's tokenizer: prefix-stable pairs, system messages, decoding."""
import logging

import pytest

from moalign.errors import MoalignError

ANSWERS = ["Sure! Knead the dough for ten minutes.", " leading space", "two\nlines\n", "Hi<|im_end|> x"]


def test_completions_are_prefix_stable_under_the_chat_template(smol_tokenizer):
    from moalign.models import completion_text, render_prompt
    tok = smol_tokenizer
    for prompt in ["How do I bake bread?", [{"role": "user", "content": "Why is the sky blue?"}]]:
        for system in (None, "concise 0.7 friendly 0.3"):
            head = render_prompt(tok, prompt, system)
            for answer in ANSWERS[:3]:
                tail = completion_text(tok, prompt, answer, system)
                assert tail.endswith(tok.eos_token) and tail.count(tok.eos_token) == 1
                assert answer.strip() in tail
                ids = tok(head, add_special_tokens=False)["input_ids"]
                both = tok(head + tail, add_special_tokens=False)["input_ids"]
                assert both[:len(ids)] == ids  # what TRL checks before it warns
    # the world's form, a space before the answer, merges with the template's newline when the
    # answer starts with whitespace itself (as scraped answers often do)
    head = render_prompt(tok, "How do I bake bread?")
    ids = tok(head, add_special_tokens=False)["input_ids"]
    both = tok(head + " " + ANSWERS[1], add_special_tokens=False)["input_ids"]
    assert both[:len(ids)] != ids


def test_dpo_on_smollm2s_template_has_no_prefix_warning(tiny_llama, tmp_path, caplog):
    import json

    from moalign.training.dpo import DPO, train_dpo
    rows = [{"prompt": f"How do I do thing {i}?", "response_0": f"Do it {i}.",
             "response_1": f"Well, thing {i} is easy: first, second.", "better_concise": 0} for i in range(4)]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = DPO(data=str(data), max_steps=1, batch_size=2)
    with caplog.at_level(logging.WARNING):
        train_dpo(str(tiny_llama), "concise", cfg, tmp_path / "out", seed=0, progress=False)
    assert not [r for r in caplog.records if "is not a prefix" in r.getMessage()]


def test_system_messages_work_or_are_refused_in_one_line(smol_tokenizer):
    from moalign.models import check_system_role, render_prompt
    tok = smol_tokenizer
    assert "friendly 0.3" in render_prompt(tok, "hi", system="friendly 0.3")
    check_system_role(tok)
    raising = ("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
               "{% endif %}{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}")
    dropping = ("{% for m in messages %}{% if m['role'] != 'system' %}{{ m['content'] }}{% endif %}"
                "{% endfor %}")
    for template, why in ((raising, "System role not supported"),
                          (dropping, "leaves the system message out")):
        tok.chat_template, saved = template, tok.chat_template
        try:
            with pytest.raises(MoalignError, match=why) as e:
                render_prompt(tok, "hi", system="concise 1.0")
            assert "\n" not in str(e.value)
            render_prompt(tok, "hi")  # no system message: fine
        finally:
            tok.chat_template = saved


def test_decoding_defaults_come_from_the_checkpoint_then_moalign(tiny_llama, base_dir):
    from transformers import GenerationConfig

    from moalign.models import FALLBACK_DECODING, decoding, load_causal_lm
    smol, world = load_causal_lm(tiny_llama), load_causal_lm(base_dir)
    assert decoding(smol) == {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 0}
    assert decoding(world) == {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0}
    assert decoding(smol, temperature=0.2, do_sample=None)["temperature"] == 0.2
    smol.generation_config = GenerationConfig()  # greedy, as a hub model without sampling settings
    assert decoding(smol) == FALLBACK_DECODING
    assert decoding(world, do_sample=False)["do_sample"] is False


def test_greedy_generation_is_deterministic_and_stops_at_eos(tiny_llama, smol_tokenizer):
    from moalign.models import generate, load_causal_lm
    model = load_causal_lm(tiny_llama)
    a = generate(model, smol_tokenizer, ["How do I bake bread?"] * 2, max_new_tokens=6, do_sample=False)
    b = generate(model, smol_tokenizer, ["How do I bake bread?"], max_new_tokens=6, do_sample=False)
    assert a[0] == a[1] == b[0]
    assert "<|im_end|>" not in a[0]


def test_a_repeated_prompt_runs_through_the_model_once_and_answers_as_alone(base_dir, monkeypatch):
    """Best-of-k batches (DPA: each prompt k times), asked to share: `generate` starts from a cache
    computed once per distinct prompt and copied to its rows; the answers are the ones each prompt
    gets alone. (A soup's per-row mixture must not share: tests/serve/test_users.py.)"""
    from moalign.models import generate, load_causal_lm, load_tokenizer
    model, tok = load_causal_lm(base_dir), load_tokenizer(base_dir)
    prompts = ["how do i fix a lamp", "is it safe to swim", "how do i fix a lamp", "how do i fix a lamp"]
    started = []
    plain = model.generate

    def spy(**kwargs):
        cache = kwargs.get("past_key_values")
        started.append((kwargs["input_ids"].shape, cache.get_seq_length() if cache is not None else 0))
        return plain(**kwargs)

    monkeypatch.setattr(model, "generate", spy)
    together = generate(model, tok, prompts, max_new_tokens=12, do_sample=False, share_prompts=True)
    (rows, length), cached = started[0]
    assert rows == 4 and cached == length - 1  # all but each prompt's last token came from the cache
    alone = {p: generate(model, tok, [p], max_new_tokens=12, do_sample=False)[0] for p in prompts}
    assert started[-1][1] == 0  # a single prompt: nothing to share
    assert all(together) and together == [alone[p] for p in prompts]


@pytest.mark.parametrize("model_dir", ["base_dir", "tiny_llama"])
def test_sampling_from_a_shared_prompt_cache_draws_what_plain_generate_draws(model_dir, request):
    """8 samples of each of 4 prompts (DPA's rounds), seeded, are the texts that transformers'
    `generate` samples from the full padded batch with the same seed: on GPT-2 (the world base) and on
    a Llama (SmolLM2's architecture: rotary positions from the left-padded mask)."""
    import torch

    from moalign.models import generate_rendered, load_causal_lm, load_tokenizer, render_prompt
    path = request.getfixturevalue(model_dir)
    model, tok = load_causal_lm(path), load_tokenizer(path)
    prompts = ["tell me about the river", "how do i fix a lamp", "write a short note", "is it safe"]
    texts = [render_prompt(tok, p, system=f"helpful {i}") for i, p in enumerate(prompts) for _ in range(8)]
    shared = generate_rendered(model, tok, texts, max_new_tokens=16, seed=5, do_sample=True, temperature=1.0,
                               top_p=1.0, top_k=0, share_prompts=True)
    torch.manual_seed(5)
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=16, do_sample=True, temperature=1.0, top_p=1.0, top_k=0,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    new = out[:, batch["input_ids"].shape[1]:]
    plain = [t.strip() for t in tok.batch_decode(new, skip_special_tokens=True)]
    assert len(set(shared)) > 8  # sampled: the copies of a prompt differ
    assert shared == plain


def test_a_right_padding_tokenizer_gets_the_same_answers(base_dir):
    """Batched prompts of different lengths are padded on the left whatever the tokenizer says: a
    tokenizer loaded elsewhere (right padding, as SmolLM2's) would put the pads between a shorter
    prompt and its answer."""
    from moalign.models import generate, load_causal_lm, load_tokenizer
    model, tok = load_causal_lm(base_dir), load_tokenizer(base_dir)
    prompts = ["how do i fix a lamp", "is it safe to swim in the river at night"]
    left = generate(model, tok, prompts, max_new_tokens=12, do_sample=False)
    tok.padding_side = "right"
    assert generate(model, tok, prompts, max_new_tokens=12, do_sample=False) == left
    assert left == [generate(model, tok, [p], max_new_tokens=12, do_sample=False)[0] for p in prompts]
