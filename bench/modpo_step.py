"""A MODPO training step vs a TRL DPO step on the same model and batch, measured side by side.

MODPO here is TRL's DPOTrainer with reference log-probs precomputed and shifted by the margins
(computed once, before training), so a step has no reference forward and no margin model. The
DPO baseline is TRL's default (reference forward every step); a second row compares with TRL's
own precompute mode, which does the same work as MODPO. Target: MODPO / DPO <= 1.10.
Run: `.venv/bin/python bench/modpo_step.py`.
"""
from __future__ import annotations

import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402


def main() -> None:
    from moalign.cli import _quiet_libraries
    from moalign.models import render_prompt
    from moalign.policies.modpo import _trainer_class
    from moalign.training import trainer_kwargs
    from moalign.world import build_world
    from moalign.world.base import build_tokenizer

    _quiet_libraries()
    tok = build_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_embd=256, n_layer=4, n_head=4,
                                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id))
    batch_size, repeats = 16, 12
    with tempfile.TemporaryDirectory() as tmp:
        spec = build_world(Path(tmp) / "w", seed=0)
        import json
        rows = [json.loads(line)
                for line in open(Path(tmp) / "w" / spec.files["pairwise_multi"])][:batch_size]
        base = [{"prompt": render_prompt(tok, r["prompt"]), "chosen": " " + r["response_0"],
                 "rejected": " " + r["response_1"]} for r in rows]
        margins = [dict(r, margin_chosen=0.1 * i, margin_rejected=-0.1 * i) for i, r in enumerate(base)]

        def trainer(cls, data, **kw):
            args = DPOConfig(per_device_train_batch_size=batch_size, beta=0.1 / 0.5,
                             **trainer_kwargs(Path(tmp) / "t", seed=0), **kw.pop("args", {}))
            return cls(model=copy.deepcopy(model), args=args, train_dataset=Dataset.from_list(data),
                       processing_class=tok, **kw)

        runs = {"modpo": trainer(_trainer_class(), margins, margin_beta=0.1,
                                 args={"precompute_ref_log_probs": True}),
                "dpo": trainer(DPOTrainer, base, ref_model=copy.deepcopy(model)),
                "dpo_precompute": trainer(DPOTrainer, base, args={"precompute_ref_log_probs": True})}
        batches = {k: next(iter(t.get_train_dataloader())) for k, t in runs.items()}
        for t in runs.values():  # what Trainer.train sets up before its first training_step
            t.create_optimizer_and_scheduler(num_training_steps=repeats * 2)
            t.current_gradient_accumulation_steps = 1
        times = {k: [] for k in runs}
        for _ in range(repeats):  # interleaved, so drift affects all alike
            for k, t in runs.items():
                t.model.train()
                start = time.perf_counter()
                t.training_step(t.model, batches[k])
                t.optimizer.step()
                t.optimizer.zero_grad()
                times[k].append(time.perf_counter() - start)
    med = {k: statistics.median(v[2:]) for k, v in times.items()}
    print(f"MODPO vs DPO step, GPT-2 {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M, "
          f"batch {batch_size} pairs")
    for k, v in med.items():
        print(f"  {k:15s} {v * 1e3:8.1f} ms")
    print(f"modpo / dpo            = {med['modpo'] / med['dpo']:.2f}  (target <= 1.10)")
    print(f"modpo / dpo_precompute = {med['modpo'] / med['dpo_precompute']:.2f}  (same work: ~1.00)")


if __name__ == "__main__":
    main()
