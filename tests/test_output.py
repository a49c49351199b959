"""What a person sees (`moalign.progress`), through the real command with its output captured as a CI
log would: a line per stage with its numbers, the result, no library output and no control codes;
the libraries' output (TRL's metric dicts) in the run's log.txt; -q and -v."""
import os
import subprocess
import sys

import pytest


@pytest.fixture
def moalign(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1")

    def run(*args: str) -> tuple[str, str]:
        proc = subprocess.run([sys.executable, "-m", "moalign", *map(str, args)], capture_output=True,
                              text=True, env=env, timeout=600, cwd=os.getcwd())
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout, proc.stderr

    return run


def test_train_and_front_show_stages_not_library_output(moalign, base_dir, tmp_path):
    dpo = [f"base_model={base_dir}", "dpo.max_steps=3", "dpo.batch_size=8"]
    out, err = moalign("train", "soups/world_dpo.yaml", *dpo, "--out", tmp_path / "soup")
    shown = out + err
    assert "train world_dpo: done in" in shown
    assert "(loss 0." in shown and "train_seconds" in shown  # the live numbers and the result table
    assert "'loss'" not in shown and "\x1b" not in shown  # no metric dicts, no control codes
    log = (tmp_path / "soup" / "log.txt").read_text()
    assert log.count("'loss'") >= 2  # each expert's dicts are in the run's log
    out, err = moalign("front", tmp_path / "soup", "--eval", "evals/world.yaml", "--grid", "2",
                       "--out", tmp_path / "front")
    assert "front soup on world: done in" in out and "(HV 0." in out and "hypervolume" in out
    assert "\x1b" not in out + err and "it/s" not in out + err


def test_quiet_shows_the_result_only_and_verbose_the_libraries_too(moalign, base_dir, tmp_path):
    dpo = [f"base_model={base_dir}", "dpo.max_steps=1", "dpo.batch_size=8"]
    out, err = moalign("train", "soups/world_dpo.yaml", *dpo, "--out", tmp_path / "q", "-q")
    assert "done in" not in out + err and "train_seconds" in out
    out, err = moalign("train", "soups/world_dpo.yaml", *dpo, "--out", tmp_path / "v", "-v")
    assert "'loss'" in out + err and "done in" in out
    assert not (tmp_path / "v" / "log.txt").exists()  # nothing captured: it went to the terminal
