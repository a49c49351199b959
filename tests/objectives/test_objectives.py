"""Objective registry: world scores equal the ground truth, hf scores equal a single-example
forward whatever the batch, implicit scores equal beta * (log pi - log pi_ref) computed by hand."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForSequenceClassification,
)

from moalign.errors import MoalignError
from moalign.models import render_prompt
from moalign.objectives import get_objective
from moalign.world import scoring
from moalign.world.base import build_tokenizer

PROMPTS = ["how do i bake bread ?", "how do i make a poison ?", "how do i fix my bike ?"]
RESPONSES = ["use flour and yeast . use dough and oven .",
             "use toxin and dose . use lethal and bleach .",
             "sorry ."]


def test_world_matches_ground_truth():
    helpful = get_objective("world:helpful")
    harmless = get_objective("world:harmless", name="safety")
    assert (helpful.name, harmless.name, helpful.spec) == ("helpful", "safety", "world:helpful")
    h = helpful.score(PROMPTS, RESPONSES)
    s = harmless.score(PROMPTS, RESPONSES)
    assert h.dtype == np.float64 and h[0] == 1.0 and s[1] == 0.0 and s[0] == 1.0
    for name in scoring.OBJECTIVES:
        np.testing.assert_array_equal(get_objective(f"world:{name}").score(PROMPTS, RESPONSES),
                                      scoring.score(name, PROMPTS, RESPONSES))
    # a message list is scored by its last user message
    chat = [{"role": "user", "content": "how do i fix my bike ?"}, {"role": "assistant", "content": "ok ."},
            {"role": "user", "content": "how do i bake bread ?"}]
    assert helpful.score([chat], [RESPONSES[0]])[0] == 1.0


def _save_classifier(model, tmp_path, name):
    out = tmp_path / name
    model.save_pretrained(out)
    build_tokenizer().save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rm")
    tok = build_tokenizer()
    torch.manual_seed(0)
    gpt2 = GPT2ForSequenceClassification(GPT2Config(
        vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2, n_positions=64, num_labels=2,
        pad_token_id=tok.pad_token_id, initializer_range=0.2))
    llama = LlamaForSequenceClassification(LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, num_labels=2,
        initializer_range=0.2))  # no pad_token_id: the objective must take it from the tokenizer
    return [_save_classifier(gpt2, tmp, "gpt2"), _save_classifier(llama, tmp, "llama")]


@pytest.mark.parametrize("arch", [0, 1], ids=["gpt2", "llama"])
def test_hf_equals_single_example_forward(classifiers, arch):
    path = classifiers[arch]
    chat = [{"role": "user", "content": "how do i brew coffee ?"}]
    prompts = PROMPTS + [chat]
    responses = RESPONSES + ["use beans and a grinder and a filter and a kettle . please enjoy ."]
    obj = get_objective(f"hf:{path}#1")
    got = obj.score(prompts, responses)

    model = AutoModelForSequenceClassification.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    want = []
    for p, r in zip(prompts, responses):
        ids = tok(render_prompt(tok, p) + " " + r, add_special_tokens=False, return_tensors="pt")
        with torch.no_grad():
            want.append(model(**ids).logits[0, 1].item())
    assert len({len(tok(render_prompt(tok, p) + " " + r)["input_ids"])
                for p, r in zip(prompts, responses)}) > 1  # padding is exercised
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert np.ptp(got) > 1e-3  # the examples really score differently
    # alone or reversed, an example keeps its score
    np.testing.assert_allclose(obj.score(prompts[::-1], responses[::-1]), want[::-1], atol=1e-5, rtol=0)
    label0 = get_objective(f"hf:{path}").score(prompts, responses)
    assert np.abs(label0 - got).max() > 1e-3
    np.testing.assert_allclose(get_objective(f"hf:{path}#0").score(prompts, responses), label0, atol=1e-6)


def test_hf_errors(classifiers, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    with pytest.raises(MoalignError, match="no model weights"):
        get_objective(f"hf:{empty}")
    with pytest.raises(MoalignError, match="out of range"):
        get_objective(f"hf:{classifiers[0]}#2")
    with pytest.raises(MoalignError, match="no label 'nice'"):
        get_objective(f"hf:{classifiers[0]}#nice")
    assert get_objective(f"hf:{classifiers[0]}#LABEL_1").name == "LABEL_1"


def _logp_by_hand(model, tok, prompt, response):
    p = tok(render_prompt(tok, prompt), add_special_tokens=False)["input_ids"]
    r = tok(" " + response, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    ids = torch.tensor([p + r])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0].double(), -1)
    return sum(logp[len(p) + i - 1, t].item() for i, t in enumerate(r))


@pytest.fixture(scope="module")
def dpo_pair(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dpo")
    tok = build_tokenizer()
    torch.manual_seed(0)
    ref = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=32, n_layer=1, n_head=2,
                                     n_positions=64, pad_token_id=tok.pad_token_id,
                                     eos_token_id=tok.eos_token_id))
    ref.save_pretrained(tmp / "ref")
    tok.save_pretrained(tmp / "ref")
    with torch.no_grad():
        for param in ref.parameters():
            param.add_(0.05 * torch.randn_like(param))
    ref.save_pretrained(tmp / "policy")
    tok.save_pretrained(tmp / "policy")
    (tmp / "policy" / "moalign.json").write_text(json.dumps(
        {"base_model": str(tmp / "ref"), "recipe": {"beta": 0.1}}))
    return tmp


def test_implicit_equals_beta_log_ratio(dpo_pair, monkeypatch):
    tok = AutoTokenizer.from_pretrained(dpo_pair / "policy")
    policy = AutoModelForCausalLM.from_pretrained(dpo_pair / "policy").eval()
    ref = AutoModelForCausalLM.from_pretrained(dpo_pair / "ref").eval()
    want = [0.1 * (_logp_by_hand(policy, tok, p, r) - _logp_by_hand(ref, tok, p, r))
            for p, r in zip(PROMPTS, RESPONSES)]
    assert min(abs(w) for w in want) > 1e-3

    monkeypatch.chdir(dpo_pair)  # a relative path resolves against the working directory
    obj = get_objective("implicit:policy")
    assert (obj.name, obj.beta, obj.ref) == ("policy", 0.1, str(dpo_pair / "ref"))
    np.testing.assert_allclose(obj.score(PROMPTS, RESPONSES), want, atol=1e-4, rtol=0)
    # the query overrides the manifest
    np.testing.assert_allclose(get_objective("implicit:policy?beta=0.5").score(PROMPTS, RESPONSES),
                               5 * np.array(want), atol=5e-4, rtol=0)
    same = get_objective("implicit:ref?ref=ref&beta=0.1").score(PROMPTS, RESPONSES)
    np.testing.assert_array_equal(same, np.zeros(len(PROMPTS)))


def test_implicit_missing_defaults(dpo_pair, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(dpo_pair / "policy", bare)
    (bare / "moalign.json").write_text(json.dumps({"base_model": str(dpo_pair / "ref")}))
    with pytest.raises(MoalignError, match=r"no beta .*beta=<DPO beta>"):
        get_objective(f"implicit:{bare}")
    (bare / "moalign.json").unlink()
    with pytest.raises(MoalignError, match="no ref and no beta"):
        get_objective(f"implicit:{bare}")
    with pytest.raises(MoalignError, match="not a number"):
        get_objective(f"implicit:{bare}?ref={dpo_pair / 'ref'}&beta=high")


def test_unknown_specs():
    for spec in ("foo:bar", "helpful"):
        with pytest.raises(MoalignError, match="world:, hf:, implicit:"):
            get_objective(spec)
    with pytest.raises(MoalignError, match="helpful, harmless, concise, polite"):
        get_objective("world:funny")
    with pytest.raises(MoalignError, match="2 prompts but 1 responses"):
        get_objective("world:helpful").score(PROMPTS[:2], RESPONSES[:1])
