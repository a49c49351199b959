"""Base references: a GGUF file transformers cannot read, or none at all, is one line and status 2;
SmolLM2 converts offline into a plain HF directory that answers coherently (slow: the real model)."""
import pytest


def test_unreadable_or_missing_gguf_is_one_line(run_cli, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    code, out, err = run_cli("base", "--model", str(bad), "--out", str(tmp_path / "out"), "-q")
    assert code == 2 and err.startswith(f"error: {bad}: transformers cannot read this GGUF file")
    assert err.count("\n") == 1 and not (tmp_path / "out").exists()
    code, _, err = run_cli("base", "--model", str(tmp_path / "none.gguf"), "--out", str(tmp_path / "o2"))
    assert code == 2 and "no such GGUF file" in err


def test_named_bases_resolve_and_world_refs_pass_through(base_dir):
    from moalign.bases import NAMED, resolve_model
    assert "smollm2" in NAMED
    assert resolve_model("world:base") == str(base_dir)
    assert resolve_model("org/model") == "org/model"


@pytest.mark.slow
def test_smollm2_offline_answers_coherently(run_cli, tmp_path):
    code, out, err = run_cli("base", "--model", "smollm2", "--out", str(tmp_path / "smol"), "-q")
    assert code == 0, err
    code, out, err = run_cli("generate", str(tmp_path / "smol"), "--prompt", "How do I bake bread?",
                             "--max-new-tokens", "48")
    assert code == 0, err
    assert sum(w in out.lower() for w in ("flour", "dough", "yeast", "bake", "bread")) >= 2, out
