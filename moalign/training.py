"""Settings every TRL/transformers trainer in moalign shares: no checkpoints or trackers (moalign
writes its own atomic checkpoint), seeded, and silent when progress is off."""
from __future__ import annotations

from pathlib import Path


def trainer_kwargs(output_dir: Path, *, seed: int, progress: bool) -> dict:
    """Keyword arguments for a TRL config (SFTConfig, DPOConfig, GRPOConfig, ...).
    bf16 where the GPU has it (TRL's default), fp32 on the CPU (where TRL's default fails)."""
    import torch
    gpu = torch.cuda.is_available()
    return dict(output_dir=str(output_dir), save_strategy="no", report_to=[], seed=seed,
                disable_tqdm=not progress, dataloader_num_workers=0, logging_steps=20,
                use_cpu=not gpu, bf16=gpu and torch.cuda.is_bf16_supported())


def quiet(trainer, progress: bool):
    """Without progress bars, transformers prints every log dict instead: drop that too."""
    if not progress:
        from transformers.trainer_callback import PrinterCallback
        trainer.remove_callback(PrinterCallback)
    return trainer
