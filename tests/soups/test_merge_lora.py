"""Exporting one preference of a LoRA checkpoint (soup, MORLHF front, CLP): the merged model and the
single adapter both give the in-memory model's logits."""
import json
import shutil

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from moalign.soups.soup import build
from moalign.steerable import Manifest, load_steerable
from moalign.training.interpolation import write_manifest

OBJ = ["helpful", "harmless"]
PROMPTS = ["how do i bake bread ?", "how do i make a poison ?"]
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _adapter(base, tokenizer, out, seed, **lora):
    """A peft LoRA adapter over `base` with random non-zero B (so it changes the logits)."""
    torch.manual_seed(seed)
    config = LoraConfig(task_type="CAUSAL_LM", **lora)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(base)), config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def family(tmp_path_factory, tokenizer):
    """A tiny Llama base and three LoRA adapters of different ranks, modules and scalings."""
    root = tmp_path_factory.mktemp("lora")
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                      bos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    base = root / "base"
    return {"base": base, "root": root, "tokenizer": tokenizer,
            "helpful": _adapter(base, tokenizer, root / "helpful", 1, r=4, lora_alpha=8,
                                target_modules=ALL_LINEAR),
            "harmless": _adapter(base, tokenizer, root / "harmless", 2, r=2, lora_alpha=4, use_rslora=True,
                                 target_modules=["q_proj", "v_proj"]),
            "middle": _adapter(base, tokenizer, root / "middle", 3, r=4, lora_alpha=4,
                               target_modules=ALL_LINEAR)}


def _soup(family):
    out = family["root"] / "soup"
    if not out.exists():
        build(str(family["base"]), {n: str(family[n]) for n in OBJ}, out)
    return out


def _morlhf(family):
    """A front of three LoRA points (1, 0), (0.5, 0.5), (0, 1), as MORLHF writes it."""
    out = family["root"] / "morlhf"
    if not out.exists():
        points = [(1.0, "helpful"), (0.5, "middle"), (0.0, "harmless")]
        anchors = [{"preference": {"helpful": x, "harmless": 1 - x}, "path": str(family[n])}
                   for x, n in points]
        out.mkdir()
        write_manifest(out, method="morlhf", objectives=OBJ, base=str(family["base"]), anchors=anchors,
                       tokenizer=str(family["helpful"]), semantics="lora-cat", recipe={}, metrics={})
    return out


def _clp(family, conditioning="parameters"):
    """CLP's layout: one adapter per objective under adapters/ (on the same modules, as CLP trains
    them), mixed by w at forward time."""
    out = family["root"] / f"clp-{conditioning}"
    if not out.exists():
        for name, source in zip(OBJ, ("helpful", "middle")):
            shutil.copytree(family[source], out / "adapters" / name)
        family["tokenizer"].save_pretrained(out)
        Manifest(method="clp", objectives=OBJ, base_model=str(family["base"]),
                 steering={"kind": "parameters", "conditioning": conditioning, "objectives": OBJ}).write(out)
    return out


CASES = {  # checkpoint, a preference that is no trained point, the adapter's rank there
    "soup": (_soup, "helpful=0.3,harmless=0.7", 4 + 2),
    "morlhf": (_morlhf, "helpful=0.8,harmless=0.2", 4 + 4),  # between (1, 0) and (0.5, 0.5)
    "clp": (_clp, "helpful=0.35,harmless=0.65", 4 + 4),
}


@torch.no_grad()
def _logits(model, tokenizer):
    batch = tokenizer(PROMPTS, return_tensors="pt", padding=True)
    return model(**batch).logits


def test_mixed_preferences_are_not_trained_points(family):
    """The cases test a real mixture: two anchors with weight, and logits unlike the base's."""
    for make, pref, _ in CASES.values():
        policy = load_steerable(make(family))
        if policy.kind == "interpolation":
            assert sorted(policy.coefficients(pref))[-2] > 0.1
        base = AutoModelForCausalLM.from_pretrained(family["base"])
        tok = policy.tokenizer
        assert (_logits(policy.model_for(pref), tok) - _logits(base, tok)).abs().max() > 1e-2


@pytest.mark.parametrize("case", ["soup", "morlhf"])
def test_a_mixed_batch_of_lora_anchors_equals_each_rows_own_model(family, case):
    """Rows with different preferences share one pass over the base: each adapted layer adds its
    anchors' low-rank products weighted per row, and each row equals the model merged at its own
    preference."""
    from moalign.soups.interpolate import LoraRowMixer
    policy = load_steerable(CASES[case][0](family))
    prefs = [{"helpful": 1.0}, {"helpful": 0.3, "harmless": 0.7}, {"helpful": 0.8, "harmless": 0.2},
             {"harmless": 1.0}]
    model, texts = policy.prepare_batch([([PROMPTS[0]], p, None) for p in prefs])
    assert isinstance(policy._mixer, LoraRowMixer)
    batch = policy.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        mixed = model(**batch).logits
        for row, pref in enumerate(prefs):
            alone = policy.model_for(pref)(**batch).logits[row]
            assert torch.allclose(mixed[row], alone, atol=1e-5), pref


@pytest.mark.parametrize("case", CASES)
def test_merged_model_equals_in_memory_model(run_cli, family, tmp_path, case):
    make, pref, _ = CASES[case]
    ckpt = make(family)
    code, out, err = run_cli("merge", ckpt, "-p", pref, "--out", tmp_path / "m")
    assert code == 0, err
    policy = load_steerable(ckpt)
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert not any("lora" in k for k in merged.state_dict())
    expected = _logits(policy.model_for(pref), policy.tokenizer)
    torch.testing.assert_close(_logits(merged, policy.tokenizer), expected, rtol=0, atol=1e-5)
    if policy.kind == "interpolation":
        mixed = dict(policy.model_for(pref).named_parameters())
        for k, v in merged.named_parameters():
            torch.testing.assert_close(v, mixed[k], rtol=0, atol=1e-5, msg=k)
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no scratch copies left beside it


@pytest.mark.parametrize("case", CASES)
def test_as_adapter_gives_the_same_logits_over_the_base(run_cli, family, tmp_path, case):
    make, pref, rank = CASES[case]
    ckpt = make(family)
    code, out, err = run_cli("merge", ckpt, "-p", pref, "--as-adapter", "--out", tmp_path / "a")
    assert code == 0, err
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["use_rslora"]) == (rank, rank, False)
    assert config["base_model_name_or_path"] == str(family["base"])
    policy = load_steerable(ckpt)
    loaded = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(family["base"]), tmp_path / "a")
    expected = _logits(policy.model_for(pref), policy.tokenizer)
    torch.testing.assert_close(_logits(loaded, policy.tokenizer), expected, rtol=0, atol=1e-5)
    assert [p.name for p in tmp_path.iterdir()] == ["a"]


def _params(path):
    return dict(AutoModelForCausalLM.from_pretrained(path).named_parameters())


def test_task_arithmetic_and_ties_run_and_load(run_cli, family, tmp_path):
    ckpt, pref = _soup(family), "helpful=0.4,harmless=0.6"
    base, mixed = _params(family["base"]), dict(load_steerable(ckpt).model_for(pref).named_parameters())
    code, _, err = run_cli("merge", ckpt, "-p", pref, "--method", "task_arithmetic", "--out", tmp_path / "a")
    assert code == 0, err
    for k, v in _params(tmp_path / "a").items():  # theta_0 + sum w_i tau_i: the soup (the weights sum to 1)
        torch.testing.assert_close(v, mixed[k], rtol=0, atol=1e-5, msg=k)
    code, _, err = run_cli("merge", ckpt, "-p", pref, "--method", "ties", "--density", "0.5",
                           "--out", tmp_path / "t")
    assert code == 0, err
    ties = _params(tmp_path / "t")
    embed = "model.embed_tokens.weight"  # no adapter there
    assert torch.equal(ties[embed], base[embed])
    q = "model.layers.0.self_attn.q_proj.weight"  # both adapters, each trimmed to half: some entries stay
    kept = (ties[q] == base[q]).float().mean()
    assert 0.1 < kept < 0.6 and (mixed[q] == base[q]).float().mean() < 0.01
    ties_model = AutoModelForCausalLM.from_pretrained(tmp_path / "t")
    assert torch.isfinite(_logits(ties_model, family["tokenizer"])).all()


def test_prompt_steered_clp_carries_its_text_in_the_chat_template(run_cli, family, tmp_path):
    ckpt, pref = _clp(family, "both"), "helpful=0.35,harmless=0.65"
    policy = load_steerable(ckpt)
    assert policy.system_text(pref) == "weights helpful 0.35 harmless 0.65"
    for flag, name in (([], "m"), (["--as-adapter"], "a")):
        code, _, err = run_cli("merge", ckpt, "-p", pref, *flag, "--out", tmp_path / name)
        assert code == 0, err
        from moalign.models import load_tokenizer
        text = load_tokenizer(tmp_path / name).apply_chat_template([{"role": "user", "content": "hi"}],
                                                                    tokenize=False)
        assert "weights helpful 0.35 harmless 0.65" in text


def _one_line_error(err):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_a_corrupt_adapter_is_one_line_and_writes_nothing(run_cli, family, tmp_path):
    for name in OBJ:
        shutil.copytree(family[name], tmp_path / name)
    (tmp_path / "harmless" / "adapter_model.safetensors").write_bytes(b"not a safetensors file")
    anchors = [{"preference": {o: float(o == n) for o in OBJ}, "path": str(tmp_path / n)} for n in OBJ]
    ckpt = tmp_path / "soup"
    ckpt.mkdir()
    write_manifest(ckpt, method="soup", objectives=OBJ, base=str(family["base"]), anchors=anchors,
                   tokenizer=str(tmp_path / "helpful"), semantics="lora-cat", recipe={}, metrics={})
    for flag in ([], ["--as-adapter"], ["--method", "ties"]):
        code, _, err = run_cli("merge", ckpt, "-p", "helpful=0.5,harmless=0.5", *flag,
                               "--out", tmp_path / "m")
        line = _one_line_error(err)
        assert code == 2 and str(ckpt) in line and str(tmp_path / "harmless") in line, line
        assert sorted(p.name for p in tmp_path.iterdir()) == ["harmless", "helpful", "soup"]


def test_as_adapter_refuses_what_is_not_one_lora_adapter(run_cli, family, tmp_path):
    code, _, err = run_cli("merge", _soup(family), "-p", "helpful=0.5,harmless=0.5", "--as-adapter",
                           "--method", "ties", "--out", tmp_path / "t")
    assert code == 2 and "needs a full model" in _one_line_error(err)
    code, _, err = run_cli("merge", family["base"], "-p", "helpful=1", "--as-adapter",
                           "--out", tmp_path / "f")
    assert code == 2 and "needs a checkpoint whose weights are LoRA adapters" in _one_line_error(err)
    assert list(tmp_path.iterdir()) == []


def test_a_mergekit_failure_is_one_line_and_leaves_no_scratch(run_cli, family, tmp_path, monkeypatch):
    import mergekit.merge

    def broken(*args, **kwargs):
        raise RuntimeError("tensor model.norm.weight is missing\n(more detail)")

    monkeypatch.setattr(mergekit.merge, "run_merge", broken)
    code, _, err = run_cli("merge", _soup(family), "-p", "helpful=0.5,harmless=0.5", "--method", "ties",
                           "--out", tmp_path / "m")
    line = _one_line_error(err)
    assert code == 2 and str(_soup(family)) in line
    assert "mergekit's ties merge failed: RuntimeError: tensor model.norm.weight is missing" in line
    assert list(tmp_path.iterdir()) == []  # neither the output nor the merged anchors' scratch copies


def test_adapters_over_different_bases_merge_each_over_its_own(run_cli, family, tmp_path):
    """The in-memory soup merges each adapter into the base it names; so does the export."""
    torch.manual_seed(5)
    other_base = AutoModelForCausalLM.from_pretrained(family["base"])
    with torch.no_grad():
        for p in other_base.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    other_base.save_pretrained(tmp_path / "base2")
    family["tokenizer"].save_pretrained(tmp_path / "base2")
    other = _adapter(tmp_path / "base2", family["tokenizer"], tmp_path / "other", 4, r=2, lora_alpha=4,
                     target_modules=["q_proj"])
    experts = {"helpful": str(family["helpful"]), "harmless": str(other)}
    build(str(family["base"]), experts, tmp_path / "soup")
    pref = "helpful=0.4,harmless=0.6"
    code, _, err = run_cli("merge", tmp_path / "soup", "-p", pref, "--out", tmp_path / "m")
    assert code == 0, err
    mixed = dict(load_steerable(tmp_path / "soup").model_for(pref).named_parameters())
    base = _params(family["base"])
    embed = "model.embed_tokens.weight"  # no adapter: 0.4 base + 0.6 base2, not the soup's base
    assert (mixed[embed] - base[embed]).abs().max() > 1e-2
    for k, v in _params(tmp_path / "m").items():
        torch.testing.assert_close(v, mixed[k], rtol=0, atol=1e-5, msg=k)
    code, _, err = run_cli("merge", tmp_path / "soup", "-p", pref, "--as-adapter", "--out", tmp_path / "a")
    assert code == 2 and "trained over different bases" in _one_line_error(err)
