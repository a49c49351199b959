"""Settings every TRL/transformers trainer in moalign shares: no checkpoints (moalign writes its own
atomic checkpoint), seeded, reporting to the chosen tracker (none by default), and shown on
moalign's display."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

REPORT_TO = ("none", "tensorboard", "wandb", "trackio")
_report_to = ["none"]


@contextlib.contextmanager
def reporting(tracker: str) -> Iterator[None]:
    """Where the trainers inside the block report their metrics (TRL's `report_to`): `none` (the
    default, no network), `tensorboard` (event files in the run's `runs/`), `wandb` or `trackio`."""
    import importlib.util

    from moalign.errors import MoalignError
    if tracker not in REPORT_TO:
        raise MoalignError(f"report_to {tracker!r}: expected one of {', '.join(REPORT_TO)}")
    if tracker != "none" and importlib.util.find_spec(tracker) is None:
        raise MoalignError(f"report_to {tracker}: the {tracker} package is not installed "
                           f"(pip install {tracker})")
    before, _report_to[0] = _report_to[0], tracker
    try:
        yield
    finally:
        _report_to[0] = before


def trainer_kwargs(output_dir: Path, *, seed: int) -> dict:
    """Keyword arguments for a TRL config (SFTConfig, DPOConfig, GRPOConfig, ...).
    bf16 where the GPU has it (TRL's default), fp32 on the CPU (where TRL's default fails). Gradient
    checkpointing (TRL's default) only on a GPU: on the CPU it recomputes every layer for nothing
    (bench/checkpointing.py: 1.49x the time, identical weights). No tqdm bars: moalign's display
    shows the steps (`moalign.progress`); the metric dicts the trainer prints instead go to the
    run's log. TensorBoard's event files are kept in the run's `runs/` (`keep_tracker_logs`)."""
    import torch
    gpu = torch.cuda.is_available()
    tracker = _report_to[0]
    return dict(output_dir=str(output_dir), save_strategy="no", seed=seed,
                report_to=[] if tracker == "none" else [tracker],
                disable_tqdm=True, dataloader_num_workers=0, logging_steps=20,
                gradient_checkpointing=gpu,  # TRL's default saves GPU memory; on the CPU it only costs time
                use_cpu=not gpu, bf16=gpu and torch.cuda.is_bf16_supported())


def seeded(trainer_class, seed: int, **kwargs):
    """`trainer_class(**kwargs)` built after seeding every global generator: TRL wraps a model with
    peft (LoRA's random init) in its constructor, before the Trainer seeds itself, so without this a
    LoRA run would depend on what the process drew before."""
    from transformers import set_seed
    set_seed(seed)
    return trainer_class(**kwargs)


def shown(trainer, progress: bool):
    """The trainer's steps and numbers on moalign's display; without progress, not even the metric
    dicts that transformers prints."""
    from transformers.trainer_callback import PrinterCallback

    from moalign.progress import trainer_callback
    trainer.add_callback(trainer_callback())
    if not progress:
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
    import time

    start = time.time()
    trainer.add_callback(_log_last_step())  # train_log.json gets the end of a run shorter than logging_steps
    trainer.train()
    seconds = time.time() - start
    model = trainer.model.merge_and_unload() if merge_lora else trainer.model
    keep_tracker_logs(Path(trainer.args.output_dir), Path(out))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    history = [h for h in trainer.state.log_history if "loss" in h or "reward" in h]
    (Path(out) / "train_log.json").write_text(json.dumps(history, indent=1) + "\n")
    return seconds


def keep_tracker_logs(scratch: Path, out: Path) -> None:
    """Drop a trainer's scratch directory, keeping TensorBoard's event files (`runs/`) in `out`."""
    import shutil
    if (scratch / "runs").is_dir():
        out.mkdir(parents=True, exist_ok=True)
        shutil.move(str(scratch / "runs"), str(out / "runs"))
    shutil.rmtree(scratch, ignore_errors=True)


def base_path(reference: str) -> str:
    """The local path of a recipe's `base_model` (`world:base`, `smollm2`, a GGUF file, a directory,
    or a hub id), checked."""
    from moalign.bases import resolve_model
    from moalign.models import check_weights
    path = resolve_model(reference)
    check_weights(path)
    return path
