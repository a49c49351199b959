"""The tiny base model: a word-level tokenizer and a small GPT-2, trained with TRL's SFTTrainer on
the world's corpus so that its samples show the corpus's spread over every objective.

`ensure_base()` puts the base for a seed into the cache directory ($MOALIGN_CACHE, default
~/.cache/moalign) once per cache key (lexicon, architecture, training settings, seed) and returns
it; later calls are instant. Seed 0's base ships with moalign (`SHIPPED`, 2.6 MB, trained by
`train_base` on 2 CPU threads): it is copied, not trained, so a fresh machine skips the ~2-4 minutes
of SFT and every machine gets the same weights (a retrained base differs with the CPU and thread
count, and so do the numbers measured on it). Other seeds, or a shipped base that no longer matches
the cache key, are trained. `write_base(out)` copies the base into a plain HF directory.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from moalign.files import atomic_dir
from moalign.progress import say, stage
from moalign.world.lexicon import vocabulary

SPECIAL_TOKENS = ("<pad>", "<unk>", "<eos>", "<system>", "<user>", "<assistant>")
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "{% if m['role'] == 'assistant' %}<assistant> {{ m['content'] }} <eos> "
    "{% else %}<{{ m['role'] }}> {{ m['content'] }} {% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)
# GPT-2's tanh GELU as one fused op ("gelu_pytorch_tanh"): the same function as GPT-2's default
# "gelu_new" (within 5e-7), which spells it as five elementwise ops; those were 17% of a MODPO run's
# time here. The shipped weights were trained under "gelu_new".
ARCH = {"n_embd": 128, "n_layer": 3, "n_head": 4, "n_positions": 256,
        "activation_function": "gelu_pytorch_tanh"}
TRAIN = {"epochs": 3, "batch_size": 32, "learning_rate": 3e-3, "warmup_steps": 0.05}
BASE_VERSION = 1
SHIPPED = Path(__file__).parent / "shipped_base"  # seed 0's base (`moalign base --retrain` re-makes it)


def build_tokenizer():
    """A word-level tokenizer over the world's vocabulary with a chat template."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS)}
    for w in vocabulary():
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="<eos>", model_max_length=ARCH["n_positions"])
    fast.chat_template = CHAT_TEMPLATE
    fast.padding_side = "left"
    return fast


def cache_root() -> Path:
    return Path(os.environ.get("MOALIGN_CACHE", "~/.cache/moalign")).expanduser()


def cache_key(seed: int) -> str:
    from moalign.world.build import WORLD_VERSION
    payload = json.dumps({"vocab": vocabulary(), "arch": ARCH, "train": TRAIN, "seed": seed,
                          "template": CHAT_TEMPLATE, "version": BASE_VERSION, "world": WORLD_VERSION},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def _train(out: Path, seed: int, progress: bool, train: dict = TRAIN) -> dict:
    """SFT a fresh tiny GPT-2 on the world's corpus with TRL; save model + tokenizer into `out`."""
    import torch
    from datasets import Dataset
    from transformers import GPT2Config, GPT2LMHeadModel
    from trl import SFTConfig, SFTTrainer

    from moalign.models import render_prompt
    from moalign.training import shown, train_and_save, trainer_kwargs
    from moalign.world.build import build_world

    tok = build_tokenizer()
    with tempfile.TemporaryDirectory() as tmp:
        build_world(Path(tmp), seed=seed)
        rows = [json.loads(line) for line in open(Path(tmp) / "data" / "sft.jsonl")]
    data = Dataset.from_list([{"prompt": render_prompt(tok, r["prompt"]), "completion": " " + r["response"]}
                              for r in rows])
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=len(tok), bos_token_id=tok.eos_token_id, eos_token_id=tok.eos_token_id,
                        pad_token_id=tok.pad_token_id, **ARCH)
    model = GPT2LMHeadModel(config)
    args = SFTConfig(num_train_epochs=train["epochs"], per_device_train_batch_size=train["batch_size"],
                     learning_rate=train["learning_rate"], warmup_steps=train["warmup_steps"],
                     lr_scheduler_type="cosine", weight_decay=0.0, max_length=ARCH["n_positions"],
                     **trainer_kwargs(out / "_trainer", seed=seed))
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    _set_decoding(model.generation_config)
    trainer = shown(SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok), progress)
    seconds = train_and_save(trainer, out, tok)
    loss = trainer.state.log_history[-1]["train_loss"]
    return {"train_seconds": round(seconds, 2), "train_loss": round(float(loss), 4), "examples": len(rows)}


# The world's sampling, carried by the base (and every checkpoint trained from it): plain sampling
# from the full distribution, which the tiny base needs to show its spread over the objectives.
WORLD_DECODING = {"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0}


def _set_decoding(config) -> None:
    for key, value in WORLD_DECODING.items():
        setattr(config, key, value)


def _add_decoding(path: Path) -> None:
    """Give a base cached before its generation_config carried the world's sampling that sampling."""
    from transformers import GenerationConfig
    config = GenerationConfig.from_pretrained(path)
    if not config.do_sample:
        _set_decoding(config)
        config.save_pretrained(path)


def base_means(path: Path, seed: int = 0, n_prompts: int = 64) -> dict[str, float]:
    """Mean of each world objective over the base's samples on the held-out prompts."""
    import numpy as np

    from moalign.models import generate, load_causal_lm, load_tokenizer
    from moalign.world.build import _split_prompts
    from moalign.world.scoring import OBJECTIVES, score

    _, evals = _split_prompts(np.random.default_rng(seed), n_prompts)
    prompts = [p for p, _ in evals]
    responses = generate(load_causal_lm(path), load_tokenizer(path), prompts, max_new_tokens=64, seed=seed)
    return {o: round(float(score(o, prompts, responses).mean()), 4) for o in OBJECTIVES}


def ensure_base(seed: int = 0, progress: bool = True) -> Path:
    """The cached base for `seed`, trained on first use."""
    key = cache_key(seed)
    path = cache_root() / f"base-{key}"
    if (path / "moalign.json").exists():
        _add_decoding(path)
        return path
    with _trainer_lock(path, progress):
        if (path / "moalign.json").exists():  # another process trained it while this one waited
            return path
        if shipped_key() == key:  # the key holds the seed
            with atomic_dir(path, overwrite=True) as tmp:
                shutil.copytree(SHIPPED, tmp, dirs_exist_ok=True)
        else:
            train_base(path, seed, progress)
    return path


def shipped_key() -> str | None:
    """The cache key of the base shipped with moalign (None: none shipped)."""
    return _key_of(SHIPPED)


def _key_of(path: Path) -> str | None:
    """The cache key in the manifest of the base at `path` (None: no readable base manifest)."""
    try:
        return json.loads((path / "moalign.json").read_text())["recipe"]["cache_key"]
    except (FileNotFoundError, KeyError, json.JSONDecodeError, TypeError):
        return None


@contextlib.contextmanager
def _trainer_lock(path: Path, progress: bool):
    """One process trains a base; others (parallel tests, a second command) wait for it instead of
    each training their own copy on the same cores."""
    import fcntl
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if progress:
                say(f"waiting for another process to finish training {path.name}")
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def train_base(path: Path, seed: int, progress: bool = True, overwrite: bool = True) -> Path:
    """Train the base for `seed` from scratch into `path` (a plain HF directory with its manifest)."""
    from moalign.steerable import Manifest
    from moalign.world.scoring import OBJECTIVES

    with stage(f"tiny base (seed {seed}): SFT on the world's corpus"), \
            atomic_dir(path, overwrite=overwrite) as tmp:
        metrics = _train(tmp, seed, progress)
        metrics["objective_means"] = base_means(tmp, seed)
        Manifest(method="base", objectives=list(OBJECTIVES), steering={"kind": "fixed"},
                 recipe={"seed": seed, "arch": ARCH, "train": TRAIN, "cache_key": cache_key(seed)},
                 metrics=metrics).write(tmp)
    return path


def write_base(out: str | os.PathLike, seed: int = 0, overwrite: bool = False, progress: bool = True,
               retrain: bool = False) -> Path:
    """A plain HF directory (model, tokenizer, moalign.json) of the base for `seed` at `out`.
    Instant when `out` already holds this base or the cache does; `retrain`: trained from scratch
    into `out`, whatever is cached or shipped."""
    out = Path(out).expanduser().absolute()
    if retrain:
        return train_base(out, seed, progress, overwrite)
    if _key_of(out) == cache_key(seed):
        _add_decoding(out)
        return out
    cached = ensure_base(seed, progress)
    with atomic_dir(out, overwrite) as tmp:
        shutil.copytree(cached, tmp, dirs_exist_ok=True)
    return out
