"""Shared fixtures. The tiny base (seed 0's ships with moalign) is copied once per cache key into
MOALIGN_CACHE (default ~/.cache/moalign) and reused by every test and later runs; worlds are built
per session."""
from __future__ import annotations

import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _quiet():
    from moalign.cli import _quiet_libraries
    _quiet_libraries()


@pytest.fixture(scope="session")
def world_dir(tmp_path_factory):
    from moalign.world import build_world
    path = tmp_path_factory.mktemp("world")
    build_world(path, seed=0)
    return path


@pytest.fixture(scope="session")
def base_dir():
    from moalign.world.base import ensure_base
    return ensure_base(0, progress=False)


@pytest.fixture(scope="session")
def tokenizer():
    from moalign.world.base import build_tokenizer
    return build_tokenizer()


@pytest.fixture(scope="session")
def soup_dir(base_dir, tmp_path_factory):
    """A soup of the world base and two perturbed copies: steering visibly changes the answers."""
    import torch
    from transformers import AutoModelForCausalLM

    from moalign.soups.soup import build
    from moalign.world.base import build_tokenizer
    root = tmp_path_factory.mktemp("serve-soup")
    tok = build_tokenizer()
    for i, name in enumerate(("helpful", "harmless")):
        model = AutoModelForCausalLM.from_pretrained(base_dir)
        torch.manual_seed(i)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    build(str(base_dir), {"helpful": str(root / "helpful"), "harmless": str(root / "harmless")},
          root / "soup")
    return root / "soup"


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run `moalign ARGS` in-process: (exit code, stdout, stderr)."""
    from moalign.cli import main

    def run(*args: str):
        monkeypatch.setattr(sys, "argv", ["moalign", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(scope="session")
def pal_dir(base_dir, tmp_path_factory):
    """PAL trained by its recipe on the world's users (about 15 s); serves the base by best-of-8."""
    from moalign.policies import train_recipe
    return train_recipe("policies/pal.yaml", [], out=str(tmp_path_factory.mktemp("pal") / "pal"),
                        progress=False)


@pytest.fixture
def stop_at(monkeypatch):
    """stop_at(module, name, n): the n-th call of module.name raises KeyboardInterrupt, as a user
    stopping a run would; the others go through. Returns the list of every call's arguments."""
    def patch(module, name: str, n: int) -> list:
        real, calls = getattr(module, name), []

        def wrapper(*args, **kwargs):
            calls.append(args)
            if len(calls) == n:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)
        return calls
    return patch


CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser(tmp_path):
    """Headless Chromium through selenium (the playground's and the compare report's tests); skips
    without Debian's chromium and chromium-driver (.ci/run installs them)."""
    if not (CHROMIUM and DRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                 "--window-size=1200,900"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    yield driver
    driver.quit()
