"""The command line: real runs in-process, and every bad input is one line with exit status 2."""
import json

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from moalign.models import generate, load_causal_lm, load_tokenizer


def _one_line_error(code, out, err, needle):
    assert code == 2, (code, out, err)
    assert needle in err, err
    assert "Traceback" not in err + out and len(err.strip().splitlines()) == 1, err


def test_world_build_then_refuse_to_overwrite(run_cli, tmp_path):
    code, out, _ = run_cli("world", "build", "--out", tmp_path / "w", "--seed", "2")
    assert code == 0 and json.loads((tmp_path / "w" / "world.json").read_text())["seed"] == 2
    before = (tmp_path / "w" / "data" / "sft.jsonl").read_bytes()
    _one_line_error(*run_cli("world", "build", "--out", tmp_path / "w", "--seed", "3"), "--overwrite")
    assert (tmp_path / "w" / "data" / "sft.jsonl").read_bytes() == before  # earlier output untouched
    code, _, _ = run_cli("world", "build", "--out", tmp_path / "w", "--seed", "3", "--overwrite")
    assert code == 0 and (tmp_path / "w" / "data" / "sft.jsonl").read_bytes() != before


def test_generate_on_a_tiny_llama(run_cli, tmp_path, tokenizer):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id)
    d = tmp_path / "llama"
    LlamaForCausalLM(cfg).save_pretrained(d)
    tokenizer.save_pretrained(d)
    code, out, err = run_cli("generate", d, "--prompt", "how do i bake bread ?", "--greedy",
                             "--max-new-tokens", "6")
    assert code == 0, err
    expected = generate(load_causal_lm(d), load_tokenizer(d), ["how do i bake bread ?"], max_new_tokens=6,
                        do_sample=False)[0]
    assert len(expected.split()) == 6 and expected in out.replace("\n", " ")


def test_generate_with_the_base_and_bad_preferences(run_cli, base_dir):
    code, out, _ = run_cli("generate", base_dir, "-p", "how do i bake bread ?", "--preference",
                           "helpful=0.7,harmless=0.3", "--max-new-tokens", "20")
    assert code == 0 and "how do i bake bread ?" in out
    for pref, needle in [("helpful=-1", "negative"), ("helpful=nan", "not finite"),
                         ("wit=1", "unknown objective")]:
        _one_line_error(*run_cli("generate", base_dir, "-p", "x", "--preference", pref), needle)


def test_usage_errors_are_click_messages_with_status_2(run_cli, base_dir):
    for args, needle in ((["generate", base_dir, "-p", "x", "--bogus"], "No such option: --bogus"),
                         (["generate", base_dir, "-p", "x", "--max-new-tokens", "0"], "'--max-new-tokens'"),
                         (["front", base_dir, "--eval", "evals/world.yaml", "--grid", "0"], "'--grid'"),
                         (["world", "build", "--out", "unused", "--seed", "-1"], "'--seed'")):
        code, out, err = run_cli(*args)
        assert code == 2 and needle in err and "Traceback" not in out + err, (code, err)


def test_bad_recipes_and_data(run_cli, tmp_path):
    (tmp_path / "r.yaml").write_text("method: sft\nepochz: 1\n")
    _one_line_error(*run_cli("train", tmp_path / "r.yaml"), "epochz: unknown key")
    (tmp_path / "m.yaml").write_text("method: magic\n")
    _one_line_error(*run_cli("train", tmp_path / "m.yaml"), "unknown method 'magic'")
    _one_line_error(*run_cli("train", "policies/morlhf.yaml", "seed=-1"),
                    "seed: Input should be greater than or equal to 0")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "hi", "answer": "yo"}\n')
    _one_line_error(*run_cli("train", "policies/sft.yaml", f"data={tmp_path / 'bad.jsonl'}", "format=sft",
                             "--out", tmp_path / "o"), "response")
    (tmp_path / "empty.jsonl").write_text("")
    _one_line_error(*run_cli("train", "policies/sft.yaml", f"data={tmp_path / 'empty.jsonl'}",
                             "--out", tmp_path / "o"), "empty.jsonl")
    _one_line_error(*run_cli("train", "policies/sft.yaml", "base_model=" + str(tmp_path),
                             "--out", tmp_path / "o"),
                    "no model weights")
    _one_line_error(*run_cli("train", "policies/sft.yaml", "base_model=openai/gpt-oss",
                             "--out", tmp_path / "o"),
                    "nor a hub id: HF_HUB_OFFLINE=1")  # the tests run offline
    assert not (tmp_path / "o").exists()


def test_checkpoint_without_weights(run_cli, tmp_path):
    (tmp_path / "ckpt").mkdir()
    _one_line_error(*run_cli("generate", tmp_path / "ckpt", "-p", "hi"), "no model weights")
    _one_line_error(*run_cli("front", tmp_path / "ckpt", "--eval", "evals/world.yaml",
                             "--out", tmp_path / "f"),
                    "no model weights")


def test_front_plot_merge(run_cli, base_dir, tmp_path):
    code, out, err = run_cli("front", base_dir, "--eval", "evals/world.yaml", "--grid", "2", "--out",
                             tmp_path / "f", "--quiet")
    assert code == 0, err
    front = json.loads((tmp_path / "f" / "front.json").read_text())
    assert len(front["points"]) == 3 and front["method"] == "base"
    _one_line_error(*run_cli("front", base_dir, "--eval", "evals/world.yaml", "--out", tmp_path / "f"),
                    "--overwrite")
    code, out, _ = run_cli("plot", tmp_path / "f", tmp_path / "f" / "front.json", "--out", tmp_path / "p.png")
    assert code == 0 and (tmp_path / "p.png").stat().st_size > 10_000
    code, _, err = run_cli("merge", base_dir, "--preference", "helpful=1", "--out", tmp_path / "m")
    assert code == 0, err
    merged, base = load_causal_lm(tmp_path / "m"), load_causal_lm(base_dir)
    assert all(torch.equal(a, b) for a, b in zip(merged.state_dict().values(), base.state_dict().values()))


def test_serve_refuses_a_bad_checkpoint(run_cli, tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(*run_cli("serve", tmp_path / "empty"), "no model weights")
