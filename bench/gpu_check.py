"""One short check of moalign on a GPU with SmolLM2-135M-Instruct: each inference path (a plain
model, a soup's interpolated model and its per-row mixer, prompt steering, features, the implicit
reward) and a few steps of each training family (DPO with LoRA, SFT with LoRA as RiC/DPA train,
GRPO as soups/MORLHF/CLP/MaxMin train), printing where each model ran and the seconds it took.
Under 10 minutes on one GPU. Its output goes in the README's "Real models" section.

Run: `.venv/bin/python bench/gpu_check.py` (needs a GPU; `--device cpu --steps 1` is a smoke test of
the script itself, about 10 minutes on 2 cores).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PROMPTS = ["How do I bake bread at home?", "What are some tips to save money?", "How can I sleep better?",
           "Can you explain how to change a flat tire?"] * 4


def timed(label: str, fn):
    import torch
    start = time.time()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    print(f"{label:<44} {time.time() - start:8.2f} s", flush=True)
    return result


def pairs_file(root: Path, n: int) -> Path:
    rows = [{"prompt": p, "response_0": "Sure.",
             "response_1": "Of course! Here is a longer, friendly answer.",
             "better_concise": 0, "better_friendly": 1} for p in PROMPTS[:n]]
    path = root / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def inference(base: str, root: Path, steps: int) -> None:
    from moalign.features import Featurizer
    from moalign.objectives import get_objective
    from moalign.soups.soup import build
    from moalign.steerable import load_steerable
    from moalign.training.dpo import DPO, train_dpo

    fixed = load_steerable(base)
    answers = timed("generate, plain model (16 x 64 tokens)",
                    lambda: fixed.generate(PROMPTS, max_new_tokens=64, batch_size=16))
    print(f"  device {next(fixed.model_for().parameters()).device}, dtype {fixed.model_for().dtype}; "
          f"answer: {answers[0][:100]!r}")
    data = pairs_file(root, 16)
    from moalign.training.lora import Lora
    for name in ("concise", "friendly"):
        timed(f"train DPO LoRA expert {name} ({steps} steps)",
              lambda name=name: train_dpo(base, name, DPO(data=str(data), max_steps=steps, batch_size=4),
                                          root / name, lora=Lora(r=8, alpha=16), progress=False))
    soup = load_steerable(build(base, {"concise": str(root / "concise"), "friendly": str(root / "friendly")},
                                root / "soup"))
    timed("soup: model for one preference", lambda: soup.model_for({"concise": 0.3, "friendly": 0.7}))
    timed("soup: generate, one preference", lambda: soup.generate(PROMPTS, {"concise": 0.3, "friendly": 0.7},
                                                                  max_new_tokens=64, batch_size=16))
    model, texts = soup.prepare_batch([(PROMPTS[:8], {"concise": 0.2, "friendly": 0.8}, None),
                                       (PROMPTS[8:], {"concise": 0.9, "friendly": 0.1}, None)])
    timed("soup: generate, per-row mixer, 2 preferences",
          lambda: soup.complete(model, texts, [(p, None, None) for p in PROMPTS], max_new_tokens=64,
                                batch_size=16))
    print(f"  mixer device {next(model.parameters()).device}")
    featurizer = timed("features: load", lambda: Featurizer(base))
    timed("features: 16 pairs", lambda: featurizer(PROMPTS, answers))
    implicit = get_objective(f"implicit:{root / 'concise'}?ref={base}&beta=0.1")
    timed("implicit reward: 16 pairs", lambda: implicit.score(PROMPTS, answers))
    text = get_objective("text:friendly")
    timed("text:friendly: 16 answers", lambda: text.score(PROMPTS, answers))


def training(base: str, root: Path, steps: int) -> None:
    from moalign.training.lora import Lora
    from moalign.training.rl import RL, train_rl
    from moalign.training.sft import train_sft
    rows = [{"prompt": p, "response": "Sure, here is how.", "system": "concise 0.7 friendly 0.3"}
            for p in PROMPTS]
    timed(f"SFT LoRA with a system message ({steps} steps)",
          lambda: train_sft(base, rows, root / "sft", epochs=1, max_steps=steps, batch_size=8,
                            learning_rate=1e-4, max_length=256, seed=0, lora=Lora(r=8, alpha=16),
                            progress=False))
    prompts = root / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    cfg = RL(prompts=str(prompts), steps=steps, num_generations=4, batch_size=8, max_completion_length=48)
    timed(f"GRPO LoRA on text:concise ({steps} steps)",
          lambda: train_rl(base, {"concise": "text:concise"}, [1.0], cfg, root / "grpo",
                           lora=Lora(r=8, alpha=16), progress=False))


def main() -> None:
    import torch

    from moalign.bases import resolve_model
    from moalign.cli import _quiet_libraries
    from moalign.device import use
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--base", default="smollm2")
    args = parser.parse_args()
    _quiet_libraries()
    device = use(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    print(f"moalign gpu_check {time.strftime('%Y-%m-%d')}: device {device} ({gpu}), "
          f"torch {torch.__version__}")
    start = time.time()
    base = timed(f"base {args.base} (converted once, then cached)", lambda: resolve_model(args.base))
    with tempfile.TemporaryDirectory() as tmp:
        inference(base, Path(tmp), args.steps)
        training(base, Path(tmp), args.steps)
    print(f"{'total':<44} {time.time() - start:8.2f} s")


if __name__ == "__main__":
    main()
