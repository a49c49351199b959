"""A new method needs its module, one registry entry, a recipe and a test: with only those (written
here as a fixture), it trains with `moalign train`, appears in compare's and the demo's lists, in
the CLI's help and in the docs index, and `moalign compare` trains it and traces its front."""
import importlib
import json
import textwrap

import pytest

from moalign import registry

MODULE = '''
"""A method that returns its base unchanged (a fixed policy): the smallest thing `train` accepts."""
import shutil
from pathlib import Path

from pydantic import Field

from moalign.config import Seed, Strict


class Config(Strict):
    base_model: str = Field("world:base", description="the model to copy")
    objectives: list[str] = Field(["helpful", "harmless"], description="the suite's objectives")
    seed: Seed = Field(0, description="unused")
    out: str = Field("runs/copy", description="output directory")


def train(cfg, out: Path, *, overwrite=False, progress=True, recipe=None) -> Path:
    from moalign.files import atomic_dir
    from moalign.steerable import Manifest
    from moalign.training import base_path
    base = base_path(cfg.base_model)
    with atomic_dir(out, overwrite) as tmp:
        for f in Path(base).iterdir():
            if f.is_file() and f.name != "moalign.json":
                shutil.copy(f, tmp / f.name)
        Manifest(method="copy", objectives=list(cfg.objectives), steering={"kind": "fixed"},
                 base_model=base, recipe=recipe or cfg.model_dump(),
                 metrics={"train_seconds": 0.0}).write(tmp)
    return out
'''


@pytest.fixture
def new_method(tmp_path, monkeypatch):
    (tmp_path / "copy_method.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    recipe = tmp_path / "copy.yaml"
    recipe.write_text("method: copy\nout: runs/copy\n")
    entry = registry.Method("copy", "copy_method", str(recipe), "fixed", "nothing", "never",
                            demo=[], suite=lambda o: ["objectives=" + json.dumps(list(o))])
    monkeypatch.setattr(registry, "REGISTRY", registry.REGISTRY + (entry,))
    monkeypatch.setattr(registry, "METHODS", {**registry.METHODS, "copy": entry})
    return recipe


def test_a_registered_method_appears_everywhere(new_method, base_dir, tmp_path, run_cli):
    import moalign.cli as cli
    from moalign.compare import run_compare, suite_overrides
    code, out, err = run_cli("train", new_method, f"base_model={base_dir}", "--out", tmp_path / "ckpt")
    assert code == 0, err
    assert json.loads((tmp_path / "ckpt" / "moalign.json").read_text())["method"] == "copy"
    assert "copy" in registry.compared("fronts") and "copy" in registry.demo_methods()
    assert "| [copy](copy.md) | fixed | nothing | never |" in registry.docs_index()
    assert suite_overrides("copy", {"a": "world:a"}) == ['objectives=["a"]']
    try:
        importlib.reload(cli)  # the CLI's help is built when it is imported
        code, out, _ = run_cli("compare", "--help")
        assert "copy" in out
    finally:
        importlib.reload(cli)
    summary = run_compare("evals/world.yaml", ["copy"], tmp_path / "cmp", base=str(base_dir),
                          progress=False)
    assert [r["method"] for r in summary["methods"]] == ["base", "copy"]
    assert summary["methods"][1]["hypervolume"] == pytest.approx(summary["methods"][0]["hypervolume"])
