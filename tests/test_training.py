"""The shared training parts. Seeding is explicit: building a trainer's arguments draws nothing and
reseeds nothing; building the trainer seeds every global generator first (peft's LoRA init happens in
TRL's constructor). Trackers pass through. RL trains with dropout off."""
import pytest
import torch

from moalign.training import seeded, trainer_kwargs


def test_building_trainer_arguments_leaves_the_global_generators_alone(tmp_path):
    torch.manual_seed(1)
    want = torch.rand(3)
    torch.manual_seed(1)
    trainer_kwargs(tmp_path, seed=0)
    assert torch.equal(torch.rand(3), want)


def test_a_trainer_is_built_from_the_same_state_whatever_was_drawn_before():
    def draw(**kwargs):
        return torch.rand(3), kwargs

    first, kwargs = seeded(draw, 7, lr=1.0)
    torch.rand(100)  # the process draws something in between
    again, _ = seeded(draw, 7, lr=1.0)
    assert torch.equal(first, again) and kwargs == {"lr": 1.0}


def test_the_tracker_passes_through_to_the_trainers_and_keeps_its_files(tmp_path, monkeypatch):
    import importlib.util

    from moalign.errors import MoalignError
    from moalign.training import keep_tracker_logs, reporting, trainer_kwargs

    assert trainer_kwargs(tmp_path / "t", seed=0)["report_to"] == []  # default: none
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: object() if name == "wandb" else real(name, *a))
    with reporting("wandb"):
        assert trainer_kwargs(tmp_path / "t", seed=0)["report_to"] == ["wandb"]
    assert trainer_kwargs(tmp_path / "t", seed=0)["report_to"] == []  # only inside
    with pytest.raises(MoalignError, match="expected one of none, tensorboard, wandb, trackio"):
        with reporting("mlflow"):
            pass
    (tmp_path / "t" / "runs").mkdir(parents=True)
    (tmp_path / "t" / "runs" / "events.out").write_text("x")
    keep_tracker_logs(tmp_path / "t", tmp_path / "run")
    assert (tmp_path / "run" / "runs" / "events.out").read_text() == "x" and not (tmp_path / "t").exists()


def test_a_recipe_names_its_tracker_and_the_command_line_overrides_it(run_cli, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: sft\nreport_to: nonsense\n")
    code, _, err = run_cli("train", recipe, "--out", tmp_path / "o")
    assert code == 2 and "report_to 'nonsense'" in err
    code, _, err = run_cli("train", "policies/sft.yaml", "--out", tmp_path / "o", "--report-to", "bogus")
    assert code == 2 and "report_to 'bogus'" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("lora", [False, True])
def test_rl_samples_and_scores_the_policy_itself_not_a_dropout_thinned_one(base_dir, tmp_path, lora):
    """The world base has dropout 0.1. At step 1 the policy is the reference, so the KL that TRL
    measures between them is 0 unless dropout thins one of the two forwards: with TRL's default
    (dropout on) it read 0.017 (full fine-tuning) and 0.0098 (LoRA)."""
    import json

    from moalign.training.lora import Lora
    from moalign.training.rl import RL, train_rl

    cfg = RL(steps=1, batch_size=8, num_generations=4, max_completion_length=8)
    train_rl(base_dir, {"helpful": "world:helpful"}, [1.0], cfg, tmp_path, progress=False,
             lora=Lora(r=4, alpha=8) if lora else None)
    step = json.loads((tmp_path / "train_log.json").read_text())[-1]
    assert step["kl"] == pytest.approx(0.0, abs=1e-7)


def test_rl_refuses_lora_dropout_it_would_turn_off(tmp_path):
    from moalign.errors import MoalignError
    from moalign.training.lora import Lora
    from moalign.training.rl import RL, rl_args

    with pytest.raises(MoalignError, match="lora.dropout 0.1: RL trains with every dropout off"):
        rl_args(RL(), [1.0], tmp_path, seed=0, lora=Lora(dropout=0.1))
    assert rl_args(RL(), [1.0], tmp_path, seed=0, lora=Lora()).disable_dropout
