"""Weight interpolation: exact at the vertices, equal to the formula and to mergekit in between."""
import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from moalign.errors import MoalignError
from moalign.preference import Preference
from moalign.soups.interpolate import coefficients
from moalign.soups.merge import merge_to_disk
from moalign.soups.soup import build
from moalign.steerable import load_steerable

OBJ = ["helpful", "harmless"]


def _save(model, tokenizer, path):
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _make_family(model_cls, cfg, tokenizer, root) -> dict:
    """A tiny base and two experts that moved away from it in different directions."""
    torch.manual_seed(0)
    base = model_cls(cfg)
    paths = {"base": _save(base, tokenizer, root / "base")}
    for i, name in enumerate(OBJ):
        expert = model_cls(cfg)
        expert.load_state_dict(base.state_dict())
        with torch.no_grad():
            for p in expert.parameters():
                p.add_(torch.randn_like(p) * 0.05 * (i + 1))
        paths[name] = _save(expert, tokenizer, root / name)
    return paths


@pytest.fixture(scope="module")
def family(tmp_path_factory, tokenizer):
    cfg = GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=2,
                     pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return _make_family(GPT2LMHeadModel, cfg, tokenizer, tmp_path_factory.mktemp("family"))


@pytest.fixture(scope="module")
def soup(family, tmp_path_factory):
    out = tmp_path_factory.mktemp("soup") / "ckpt"
    build(str(family["base"]), {n: str(family[n]) for n in OBJ}, out)
    return load_steerable(out)


def _params(model):
    return dict(model.named_parameters())


def test_vertices_reproduce_the_experts_exactly(soup, family):
    for name in OBJ:
        expert = AutoModelForCausalLM.from_pretrained(family[name])
        mixed = _params(soup.model_for({name: 1.0}))
        for k, v in _params(expert).items():
            assert torch.equal(mixed[k], v), k


def test_interpolation_is_the_soup_formula(soup, family):
    base, e1, e2 = (_params(AutoModelForCausalLM.from_pretrained(family[n])) for n in ("base", *OBJ))
    mixed = _params(soup.model_for("helpful=0.3,harmless=0.7"))
    for k in base:
        expected = base[k] + 0.3 * (e1[k] - base[k]) + 0.7 * (e2[k] - base[k])
        torch.testing.assert_close(mixed[k], expected, rtol=0, atol=1e-6)
    # logits lie between the experts', and generation runs on the mixed model
    assert len(soup.generate(["how do i bake bread ?"], preference="helpful=0.5,harmless=0.5",
                             max_new_tokens=5)) == 1


def test_in_memory_soup_equals_mergekit(soup, family, tmp_path):
    pref = "helpful=0.35,harmless=0.65"
    mixed = _params(soup.model_for(pref))
    lam = soup.coefficients(pref)
    anchors = list(zip(soup.anchor_paths, lam))
    for method in ("linear", "task_arithmetic"):
        out = merge_to_disk(anchors, tmp_path / method, method=method, base=family["base"])
        merged = _params(AutoModelForCausalLM.from_pretrained(out))
        assert merged.keys() == mixed.keys()
        for k, v in merged.items():
            torch.testing.assert_close(v, mixed[k], rtol=0, atol=1e-5, msg=f"{method}: {k}")
    ties = _params(AutoModelForCausalLM.from_pretrained(
        merge_to_disk(anchors, tmp_path / "ties", method="ties", base=family["base"], density=0.5)))
    assert any(not torch.allclose(ties[k], mixed[k], atol=1e-5) for k in mixed)  # trimming changes things


def test_cache_is_bounded_and_switching_back_is_identical(soup):
    first = {k: v.clone() for k, v in _params(soup.model_for("helpful=0.2,harmless=0.8")).items()}
    for i in range(soup.cache_size + 2):
        soup.model_for({"helpful": 0.1 * i + 0.01, "harmless": 1.0})
    assert len(soup._cache) == soup.cache_size
    again = _params(soup.model_for("helpful=0.2,harmless=0.8"))
    assert all(torch.equal(again[k], v) for k, v in first.items())
    assert soup.model_for("helpful=0.2,harmless=0.8") is soup.model_for({"helpful": 2, "harmless": 8})


def test_mismatched_expert_names_the_first_tensor(family, tmp_path, tokenizer):
    other = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=48, n_layer=2, n_head=2))
    _save(other, tokenizer, tmp_path / "wide")
    with pytest.raises(MoalignError, match="does not match .*tensor transformer.wte.weight"):
        build(str(family["base"]), {"helpful": str(family["helpful"]), "harmless": str(tmp_path / "wide")},
              tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


def test_coefficients():
    vertices = [Preference({"a": 1}, "ab"), Preference({"b": 1}, "ab")]
    assert coefficients(Preference({"a": 0.3, "b": 0.7}, "ab"), vertices) == pytest.approx([0.3, 0.7])
    grid = [Preference({"a": x, "b": 1 - x}, "ab") for x in (0.0, 0.5, 1.0, 0.25)]
    assert coefficients(Preference({"a": 0.4, "b": 0.6}, "ab"), grid) == pytest.approx([0, 0.6, 0, 0.4])
    assert coefficients(Preference({"a": 0.5, "b": 0.5}, "ab"), grid) == pytest.approx([0, 1, 0, 0])
    inner = [Preference({"a": 0.2, "b": 0.8}, "ab"), Preference({"a": 0.8, "b": 0.2}, "ab")]
    assert coefficients(Preference({"a": 0.05, "b": 0.95}, "ab"), inner) == pytest.approx([1, 0])  # clamped
    three = [Preference(dict(zip("abc", w)), "abc")
             for w in ([0.6, 0.2, 0.2], [0.2, 0.6, 0.2], [0.2, 0.2, 0.6])]
    lam = coefficients(Preference({"a": 0.1, "b": 0.8, "c": 0.1}, "abc"), three)
    assert lam == pytest.approx([0, 1, 0])
    vertices3 = [Preference({k: 1}, "abc") for k in "cab"]
    assert (coefficients(Preference({"a": 0.2, "b": 0.3, "c": 0.5}, "abc"), vertices3) ==
            pytest.approx([0.5, 0.2, 0.3]))
    assert np.isclose(sum(lam), 1)


def test_cli_merge_and_soup_build(run_cli, family, tmp_path):
    code, _, err = run_cli("soup", "build", "--base", family["base"],
                           "--expert", f"helpful={family['helpful']}",
                           "--expert", f"harmless={family['harmless']}", "--out", tmp_path / "soup")
    assert code == 0, err
    soup = load_steerable(tmp_path / "soup")
    code, _, err = run_cli("merge", tmp_path / "soup", "-p", "helpful=0.4,harmless=0.6",
                           "--out", tmp_path / "m")
    assert code == 0, err
    merged = _params(AutoModelForCausalLM.from_pretrained(tmp_path / "m"))
    mixed = _params(soup.model_for("helpful=0.4,harmless=0.6"))
    assert all(torch.allclose(merged[k], mixed[k], atol=1e-5, rtol=0) for k in mixed)
    code, _, err = run_cli("soup", "build", "--base", family["base"], "--expert", "helpful",
                           "--out", tmp_path / "x")
    assert code == 2 and "expected name=DIR" in err
    code, _, err = run_cli("merge", tmp_path / "soup", "-p", "helpful=1", "--method", "slerp",
                           "--out", tmp_path / "y")
    assert code == 2 and "unknown merge method 'slerp'" in err


@pytest.mark.parametrize("row_budget", [None, 0], ids=["per-row weights", "per anchor"])
def test_rows_with_different_preferences_mix_in_one_forward(soup, row_budget, monkeypatch):
    """The row mixer (one batch, a preference per row) equals each preference's materialised model,
    both with per-row weights (small models) and running each module once per anchor (over budget)."""
    from moalign.soups import interpolate
    monkeypatch.setattr(soup, "_mixer", None)
    if row_budget is not None:
        monkeypatch.setattr(interpolate, "ROW_BUDGET", row_budget)
    prefs = [{"helpful": 1.0}, {"harmless": 1.0}, {"helpful": 0.3, "harmless": 0.7},
             {"helpful": 0.3, "harmless": 0.7}]
    jobs = ([(["how do i bake bread ?"], p, None) for p in prefs[:3]] +
            [(["tell me about the weather"], prefs[3], None)])
    model, texts = soup.prepare_batch(jobs)
    assert (soup._mixer.rows is None) == (row_budget == 0)
    tok = soup.tokenizer
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        mixed = model(**batch).logits
        for row, pref in enumerate(prefs):
            alone = soup.model_for(pref)(**batch).logits[row]
            assert torch.allclose(mixed[row], alone, atol=1e-5), pref
    # greedy answers (same padded batch) match each preference's own model; one preference: the cached model
    from moalign.models import generate_rendered
    together = generate_rendered(model, tok, texts, do_sample=False, max_new_tokens=8)
    assert together == [generate_rendered(soup.model_for(w), tok, texts, do_sample=False,
                                          max_new_tokens=8)[row]
                        for row, w in enumerate(prefs)]
    same, _ = soup.prepare_batch([(["a"], prefs[2], None), (["b"], prefs[2], None)])
    assert same is soup.model_for(prefs[2])


def test_row_mixing_is_exact_on_a_llama_soup(tmp_path, tokenizer):
    """Another architecture: Llama's RMSNorm has no per-row op, so it runs once per anchor while its
    Linear and Embedding layers take per-row weights; each row still equals its own soup."""
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=1, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id)
    paths = _make_family(LlamaForCausalLM, cfg, tokenizer, tmp_path)
    soup = load_steerable(build(str(paths["base"]), {n: str(paths[n]) for n in OBJ}, tmp_path / "soup"))
    prefs = [{"helpful": 1.0}, {"helpful": 0.3, "harmless": 0.7}, {"harmless": 1.0}]
    model, texts = soup.prepare_batch([(["how do i bake bread ?"], p, None) for p in prefs])
    assert soup._mixer.rows is not None
    batch = soup.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        mixed = model(**batch).logits
        for row, pref in enumerate(prefs):
            assert torch.allclose(mixed[row], soup.model_for(pref)(**batch).logits[row], atol=1e-5), pref


def test_a_held_model_never_changes_when_the_cache_evicts_it(soup):
    """A streaming request or user code may hold a model while other preferences fill the cache."""
    held = soup.model_for("helpful=0.9,harmless=0.1")
    before = {k: v.clone() for k, v in _params(held).items()}
    for i in range(soup.cache_size + 1):
        soup.model_for({"helpful": 0.05 * i + 0.02, "harmless": 1.0})
    assert Preference.parse("helpful=0.9,harmless=0.1", OBJ).key() not in soup._cache  # evicted
    assert all(torch.equal(_params(held)[k], v) for k, v in before.items())


def test_a_mixed_batch_materialises_no_model_per_preference(soup, monkeypatch):
    calls = []
    real = soup.model_for
    monkeypatch.setattr(soup, "model_for", lambda *a, **k: calls.append(a) or real(*a, **k))
    jobs = [(["how do i bake bread ?"], {"helpful": w, "harmless": 1 - w}, None) for w in (0.1, 0.5, 0.9)]
    model, texts = soup.prepare_batch(jobs)
    assert calls == [] and len(texts) == 3 and model is soup._mixer.model


def test_an_evicted_model_nobody_holds_lends_its_memory(soup):
    """A cache miss reuses the buffer of an evicted model that nobody holds (no fresh page faults)."""
    for i in range(soup.cache_size):
        soup.model_for({"helpful": 0.3 + 0.01 * i, "harmless": 1.0})
    oldest = next(iter(soup._cache.values()))[1].data_ptr()
    soup.model_for({"helpful": 0.77, "harmless": 0.23})
    assert next(reversed(soup._cache.values()))[1].data_ptr() == oldest


def test_a_cache_miss_rewrites_an_unheld_model_in_place(soup):
    """The cheap switch (one pass over the buffer, no new modules) when nobody holds the evicted model."""
    for i in range(soup.cache_size):
        soup.model_for({"helpful": 0.4 + 0.01 * i, "harmless": 1.0})
    oldest = id(next(iter(soup._cache.values()))[0])
    assert id(soup.model_for({"helpful": 0.66, "harmless": 0.34})) == oldest
