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
