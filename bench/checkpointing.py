"""Gradient checkpointing on the CPU: TRL's configs turn it on by default (it saves GPU memory by
recomputing each layer's forward in the backward pass); moalign turns it off where no GPU trains
(`moalign.training.trainer_kwargs`). This trains the tiny world base's SFT for N steps both ways
from the same seed, side by side, and prints the seconds of each, the ratio, and how far the two
trained models differ (recomputation gives the same activations, so the weights should agree).
Run: `.venv/bin/python bench/checkpointing.py [--steps 60]`.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def train(steps: int, checkpointing: bool, out: Path) -> float:
    import trl

    import moalign.world.base as base
    real = trl.SFTConfig.__init__

    def init(self, *args, **kwargs):
        kwargs.update(max_steps=steps, gradient_checkpointing=checkpointing)
        real(self, *args, **kwargs)

    trl.SFTConfig.__init__ = init
    try:
        return base._train(out, 0, False)["train_seconds"]
    finally:
        trl.SFTConfig.__init__ = real


def main() -> None:
    import torch
    from safetensors.torch import load_file

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        seconds = {on: train(args.steps, on, Path(tmp) / str(on)) for on in (True, False)}
        weights = [load_file(Path(tmp) / str(on) / "model.safetensors") for on in (True, False)]
    diff = max(float((weights[0][k] - weights[1][k]).abs().max()) for k in weights[0])
    print(f"tiny base SFT, {args.steps} steps, {torch.get_num_threads()} threads: "
          f"checkpointing on {seconds[True]:.1f} s, off {seconds[False]:.1f} s, "
          f"on / off {seconds[True] / seconds[False]:.2f}x; max weight difference {diff:.2e}")


if __name__ == "__main__":
    main()
