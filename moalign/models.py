"""Loading causal LMs and tokenizers, rendering prompts, batched generation and log-probabilities.

Every path goes through here so that training, generation and scoring format prompts the same
way: a tokenizer with a chat template gets the prompt as a user message (or the message list as
given); one without gets the text as it is.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence, Union

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from moalign.errors import MoalignError

Prompt = Union[str, list]  # plain text, or a list of {"role", "content"} messages
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json",
                "pytorch_model.bin.index.json", "adapter_model.safetensors", "adapter_model.bin")


def resolve(path_or_id: str | os.PathLike) -> str:
    """An existing local path made absolute (libraries take relative paths for hub ids), else as is."""
    p = Path(path_or_id).expanduser()
    return str(p.resolve()) if p.exists() else str(path_or_id)


def check_weights(path: str | os.PathLike) -> None:
    """Fail with one line if a local directory holds no model weights."""
    p = Path(path)
    if not p.exists():
        hub_id = str(path).count("/") == 1 and not str(path).startswith((".", "/", "~"))
        if hub_id and os.environ.get("HF_HUB_OFFLINE") != "1":
            return  # resolved by transformers when online
        offline = " (nor a hub id: HF_HUB_OFFLINE=1 is set)" if hub_id else ""
        raise MoalignError(f"{path}: no such checkpoint directory{offline}")
    if not p.is_dir():
        raise MoalignError(f"{path}: not a directory")
    if not any((p / f).exists() for f in WEIGHT_FILES):
        raise MoalignError(f"{path}: no model weights (expected one of model.safetensors, "
                           "pytorch_model.bin, adapter_model.safetensors)")


def load_tokenizer(path: str | os.PathLike):
    """A tokenizer padded on the left (for generation), with a pad token."""
    tok = AutoTokenizer.from_pretrained(resolve(path))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def load_causal_lm(path: str | os.PathLike, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """A causal LM in eval mode; a peft adapter directory loads on top of its base model."""
    check_weights(path)
    path = resolve(path)
    if (Path(path) / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM
        model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model.eval()


def render_prompt(tokenizer, prompt: Prompt, system: str | None = None) -> str:
    """The text the model sees before its answer."""
    if getattr(tokenizer, "chat_template", None):
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if system is not None:
            messages = [{"role": "system", "content": system}] + messages
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(prompt, str):
        raise MoalignError("a message-list prompt needs a tokenizer with a chat template")
    return prompt if system is None else f"{system}\n\n{prompt}"


def generate(model, tokenizer, prompts: Sequence[Prompt], *, system: str | None = None, **gen) -> list[str]:
    """Answers to `prompts`, in order. Seeded: the same call returns the same texts."""
    return generate_rendered(model, tokenizer, [render_prompt(tokenizer, p, system) for p in prompts], **gen)


@torch.no_grad()
def generate_rendered(model, tokenizer, texts: Sequence[str], *, max_new_tokens: int = 48, do_sample: bool = True,
                      temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, seed: int = 0,
                      batch_size: int = 64, streamer=None, stopping_criteria=None) -> list[str]:
    """Answers to already rendered prompt texts (what the model sees), in order. `stopping_criteria`
    lets a caller end generation early (the server stops a stream whose client has gone)."""
    out: list[str] = []
    device = next(model.parameters()).device
    for start in range(0, len(texts), batch_size):
        torch.manual_seed(seed + start)
        batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(device)
        kwargs = dict(do_sample=do_sample)
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=top_k)
        gen = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id, streamer=streamer,
                             stopping_criteria=stopping_criteria, **kwargs)
        new = gen[:, batch["input_ids"].shape[1]:]
        out += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return out


def _pair_ids(tokenizer, prompt: Prompt, response: str) -> tuple[list[int], list[int]]:
    p = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    r = tokenizer(" " + response, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        r = r + [tokenizer.eos_token_id]
    return p, r


@torch.no_grad()
def sequence_logprobs(model, tokenizer, prompts: Sequence[Prompt], responses: Sequence[str],
                      batch_size: int = 32) -> torch.Tensor:
    """Sum over response tokens (and the end-of-sequence token) of log p(token | context)."""
    pairs = [_pair_ids(tokenizer, p, r) for p, r in zip(prompts, responses, strict=True)]
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start:start + batch_size]
        length = max(len(p) + len(r) for p, r in chunk)
        ids = torch.full((len(chunk), length), tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        resp = torch.zeros_like(ids, dtype=torch.bool)
        for i, (p, r) in enumerate(chunk):  # right padding: positions match an unpadded forward
            n = len(p) + len(r)
            ids[i, :n] = torch.tensor(p + r)
            mask[i, :n] = 1
            resp[i, len(p):n] = True
        logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None].to(device))[..., 0]
        out.append((logp * resp[:, 1:].to(device)).sum(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0)
