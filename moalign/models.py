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


def load_causal_lm(path: str | os.PathLike, dtype: torch.dtype | None = None, train: bool = False
                   ) -> PreTrainedModel:
    """A causal LM; a peft adapter directory loads on top of its base model. For inference (the
    default) it is placed by the device policy (`moalign.device`); `train=True` leaves it on the CPU
    in float32 for a trainer, which places it itself."""
    check_weights(path)
    path = resolve(path)
    if (Path(path) / "adapter_config.json").exists():
        from peft import AutoPeftModelForCausalLM
        model = AutoPeftModelForCausalLM.from_pretrained(path, dtype=dtype)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    if train:
        return model
    from moalign.device import place
    return place(model)


def load_with_adapters(base: str, adapters: dict[str, str | os.PathLike]):
    """`base` with several peft LoRA adapters loaded by name, placed by the device policy (the
    adapters too: peft keeps them in float32 otherwise)."""
    from peft import PeftModel

    from moalign.device import place
    (first, path), *rest = adapters.items()
    model = PeftModel.from_pretrained(load_causal_lm(base), str(path), adapter_name=first)
    for name, path in rest:
        model.load_adapter(str(path), adapter_name=name)
    return place(model)


_SENTINEL = "moalign-system-check"


def check_system_role(tokenizer) -> None:
    """Fail with one line when the tokenizer's chat template cannot carry a system message (it
    raises, or drops the message), instead of steering silently with nothing."""
    template = tokenizer.chat_template
    if getattr(tokenizer, "_moalign_system_checked", None) == template:
        return
    messages = [{"role": "system", "content": _SENTINEL}, {"role": "user", "content": "hi"}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as e:  # noqa: BLE001 - jinja's raise_exception and template errors alike
        text, why = "", str(e).splitlines()[0] if str(e) else type(e).__name__
    else:
        why = "it leaves the system message out"
    if _SENTINEL not in text:
        name = getattr(tokenizer, "name_or_path", "") or "this tokenizer"
        raise MoalignError(f"{name}: its chat template has no system role ({why}); a preference "
                           "carried in the system message (RiC, DPA, CLP's prompt variants) cannot be used")
    tokenizer._moalign_system_checked = template


def _messages(tokenizer, prompt: Prompt, system: str | None) -> list[dict]:
    """The chat messages of a prompt (a text becomes the user's message), after its system text."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system is None:
        return messages
    check_system_role(tokenizer)
    return [{"role": "system", "content": system}] + messages


def render_prompt(tokenizer, prompt: Prompt, system: str | None = None) -> str:
    """The text the model sees before its answer."""
    if getattr(tokenizer, "chat_template", None):
        messages = _messages(tokenizer, prompt, system)
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if not isinstance(prompt, str):
        raise MoalignError("a message-list prompt needs a tokenizer with a chat template")
    return prompt if system is None else f"{system}\n\n{prompt}"


def completion_text(tokenizer, prompt: Prompt, response: str, system: str | None = None) -> str:
    """What follows the rendered prompt when the chat template writes `response` as the assistant's
    answer, up to and including the end-of-sequence token. Training targets (SFT, DPO) and summed
    log-probs use it, so that prompt + completion tokenizes with the prompt's tokens as a prefix
    under the model's own template (SmolLM2: "answer<|im_end|>"; the world: " answer <eos>")."""
    eos = tokenizer.eos_token or ""
    if getattr(tokenizer, "chat_template", None):
        head = render_prompt(tokenizer, prompt, system)
        messages = _messages(tokenizer, prompt, system) + [{"role": "assistant", "content": response}]
        full = tokenizer.apply_chat_template(messages, tokenize=False)
        if full.startswith(head):
            tail = full[len(head):]
            end = tail.rfind(eos) if eos else -1
            return tail[:end + len(eos)] if end >= 0 else tail + eos
    return " " + response + eos


def generate(model, tokenizer, prompts: Sequence[Prompt], *, system: str | None = None, **gen) -> list[str]:
    """Answers to `prompts`, in order. Seeded: the same call returns the same texts."""
    return generate_rendered(model, tokenizer, [render_prompt(tokenizer, p, system) for p in prompts], **gen)


FALLBACK_DECODING = {"do_sample": True, "temperature": 0.7, "top_p": 0.9, "top_k": 0}


def decoding(model, **given) -> dict:
    """Sampling settings for `model`: each given value (not None) wins; else the checkpoint's
    generation_config when it asks for sampling (the world base: temperature 1, top_p 1, top_k 0;
    a prepared SmolLM2: 0.7, 0.9, 0); else moalign's defaults for an instruct model (sampling at
    temperature 0.7, top_p 0.9). transformers' own default, greedy, would make every sample of a
    prompt the same."""
    config = getattr(model, "generation_config", None)
    own = {}
    if config is not None and getattr(config, "do_sample", False):
        temperature = 1.0 if config.temperature is None else config.temperature
        top_p = 1.0 if config.top_p is None else config.top_p
        own = {"do_sample": True, "temperature": temperature, "top_p": top_p, "top_k": config.top_k or 0}
    return {**FALLBACK_DECODING, **own, **{k: v for k, v in given.items() if v is not None}}


@torch.no_grad()
def shared_prompts(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> dict:
    """`generate`'s inputs for a left-padded batch. Where rows repeat (best-of-k sampling: DPA's k
    answers to each prompt), each distinct prompt but its last token runs through the model once and
    its keys and values are copied to its rows: `generate` starts from that cache. The answers are
    the same (greedy: equal; sampled: the same draws from logits equal to float rounding). DPA's demo
    training (3 rounds of 512 prompts x 8 samples, the world base, one thread): 123 and 139 s of CPU
    against 150 and 152 s, the same weights. (GRPO's groups repeat prompts too; routed through here
    through TRL, the soup's 15-step experts took the same time, their 21-token prompts cheap beside
    64-token answers, so RL does not.)"""
    plain = {"input_ids": input_ids, "attention_mask": attention_mask}
    distinct, rows = torch.unique(torch.cat([input_ids, attention_mask], 1), dim=0, return_inverse=True)
    if len(distinct) == len(input_ids) or input_ids.shape[1] < 2:
        return plain
    ids, mask = distinct.split(input_ids.shape[1], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding: as `generate` numbers positions
    cache = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=positions[:, :-1],
                  use_cache=True).past_key_values
    if not hasattr(cache, "reorder_cache"):  # a model without transformers' Cache: no sharing
        return plain
    cache.reorder_cache(rows)
    return {**plain, "past_key_values": cache}


@torch.no_grad()
def generate_rendered(model, tokenizer, texts: Sequence[str], *, max_new_tokens: int = 48,
                      do_sample: bool | None = None, temperature: float | None = None,
                      top_p: float | None = None, top_k: int | None = None, seed: int = 0,
                      batch_size: int = 64, streamer=None, stopping_criteria=None,
                      share_prompts: bool = False) -> list[str]:
    """Answers to already rendered prompt texts (what the model sees), in order. Unset sampling
    settings come from `decoding`. `stopping_criteria` lets a caller end generation early (the
    server stops a stream whose client has gone). `share_prompts`: a text that repeats in a batch
    runs through the model once (`shared_prompts`); only for a model that computes each row alone
    (not a soup's per-row mixture, where equal texts can have different weights)."""
    out: list[str] = []
    device = next(model.parameters()).device
    settings = decoding(model, do_sample=do_sample, temperature=temperature, top_p=top_p, top_k=top_k)
    kwargs = dict(do_sample=settings["do_sample"])
    if settings["do_sample"]:
        kwargs.update(temperature=settings["temperature"], top_p=settings["top_p"], top_k=settings["top_k"])
    else:  # quiet transformers' warnings about sampling settings a greedy call ignores
        kwargs.update(temperature=None, top_p=None, top_k=None)
    for start in range(0, len(texts), batch_size):
        torch.manual_seed(seed + start)
        batch = tokenizer(texts[start:start + batch_size], return_tensors="pt", padding=True,
                          padding_side="left", add_special_tokens=False).to(device)  # answers follow
        if share_prompts:
            batch = shared_prompts(model, batch["input_ids"], batch["attention_mask"])
        gen = model.generate(**batch, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                             eos_token_id=tokenizer.eos_token_id, streamer=streamer,
                             stopping_criteria=stopping_criteria, **kwargs)
        new = gen[:, batch["input_ids"].shape[1]:]
        out += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return out


def _pair_ids(tokenizer, prompt: Prompt, response: str) -> tuple[list[int], list[int]]:
    p = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    r = tokenizer(completion_text(tokenizer, prompt, response), add_special_tokens=False)["input_ids"]
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
