"""Seeding is explicit: building a trainer's arguments draws nothing and reseeds nothing; building the
trainer seeds every global generator first (peft's LoRA init happens in TRL's constructor)."""
import torch

from moalign.training import seeded, trainer_kwargs


def test_building_trainer_arguments_leaves_the_global_generators_alone(tmp_path):
    torch.manual_seed(1)
    want = torch.rand(3)
    torch.manual_seed(1)
    trainer_kwargs(tmp_path, seed=0, progress=False)
    assert torch.equal(torch.rand(3), want)


def test_a_trainer_is_built_from_the_same_state_whatever_was_drawn_before():
    def draw(**kwargs):
        return torch.rand(3), kwargs

    first, kwargs = seeded(draw, 7, lr=1.0)
    torch.rand(100)  # the process draws something in between
    again, _ = seeded(draw, 7, lr=1.0)
    assert torch.equal(first, again) and kwargs == {"lr": 1.0}
