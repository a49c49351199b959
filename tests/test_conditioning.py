"""Prompt conditioning shared by RiC and DPA: tokens for the steering text, rejection sampling."""
import numpy as np
import pytest
from transformers import GPT2Config, GPT2LMHeadModel

from moalign.conditioning import add_missing_tokens, pareto_leading
from moalign.errors import MoalignError
from moalign.world.base import build_tokenizer


def test_add_missing_tokens_writes_every_number_without_splitting_words():
    tokenizer = build_tokenizer()  # a fresh one: this test grows it
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2))
    before = len(tokenizer)
    vocab_word = next(w for w in tokenizer.get_vocab() if w.isalpha() and len(w) > 4)
    text = f"Your response should maximize weighted rating = helpful*85 + harmless*-53 zzq{vocab_word}"
    added = add_missing_tokens(tokenizer, model, [text, "helpful 0.5 harmless -1.2"])
    assert set("0123456789") <= set(added) and "weighted" in added
    assert len(tokenizer) == before + len(added) == model.get_input_embeddings().weight.shape[0]
    ids = tokenizer("helpful*85 + harmless*-53 harmless 10.3", add_special_tokens=False)["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.convert_ids_to_tokens(ids)[2:4] == ["8", "5"]
    # an added whole word does not split a vocabulary word that contains it
    assert tokenizer(vocab_word, add_special_tokens=False)["input_ids"] == [tokenizer.get_vocab()[vocab_word]]
    assert add_missing_tokens(tokenizer, model, [text]) == []  # idempotent


def test_pareto_leading_keeps_rows_that_lead_on_any_objective():
    scores = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [0.2, 0.1]])
    # numpy's linear quantiles: 0.7 -> (0.44, 0.42), 0.9 -> (0.8, 0.8)
    assert pareto_leading(scores, 0.7).tolist() == [1, 2, 3]
    assert pareto_leading(scores, 0.9).tolist() == [1, 2]
    with pytest.raises(MoalignError):
        pareto_leading(np.zeros((0, 2)), 0.7)


def test_nothing_is_added_without_conditioning_texts(tokenizer):
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2))
    assert add_missing_tokens(tokenizer, model, []) == []
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
