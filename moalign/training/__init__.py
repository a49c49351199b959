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


def seeded(trainer_class, seed: int, **kwargs):
    """`trainer_class(**kwargs)` built after seeding every global generator: TRL wraps a model with
    peft (LoRA's random init) in its constructor, before the Trainer seeds itself, so without this a
    LoRA run would depend on what the process drew before."""
    from transformers import set_seed
    set_seed(seed)
    return trainer_class(**kwargs)


def quiet(trainer, progress: bool):
    """Without progress bars, transformers prints every log dict instead: drop that too."""
    if not progress:
        from transformers.trainer_callback import PrinterCallback
        trainer.remove_callback(PrinterCallback)
    return trainer


def _log_last_step():
    """A callback that logs the last step, whatever logging_steps says."""
    from transformers import TrainerCallback

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return LogLastStep()


def train_and_save(trainer, out: Path, tokenizer, merge_lora: bool = False) -> float:
    """Train, then save the model (LoRA merged into it if asked), the tokenizer and the log history
    into `out`, dropping the trainer's scratch directory. Returns the training seconds."""
    import json
    import shutil
    import time

    start = time.time()
    trainer.add_callback(_log_last_step())  # train_log.json gets the end of a run shorter than logging_steps
    trainer.train()
    seconds = time.time() - start
    model = trainer.model.merge_and_unload() if merge_lora else trainer.model
    shutil.rmtree(Path(trainer.args.output_dir), ignore_errors=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    history = [h for h in trainer.state.log_history if "loss" in h or "reward" in h]
    (Path(out) / "train_log.json").write_text(json.dumps(history, indent=1) + "\n")
    return seconds


def base_path(reference: str) -> str:
    """The local path of a recipe's `base_model` (`world:base`, `smollm2`, a GGUF file, a directory,
    or a hub id), checked."""
    from moalign.bases import resolve_model
    from moalign.models import check_weights
    path = resolve_model(reference)
    check_weights(path)
    return path
