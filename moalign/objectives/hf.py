"""`hf:<dir>[#<label>]`: a reward model stored as an AutoModelForSequenceClassification.

The score is the logit of one label (an index, or a name from config.label2id; default 0), so a
multi-head reward model gives one objective per head. The model reads the prompt rendered as the
policy sees it (chat template when the tokenizer has one) followed by " " + response. Batches are
right-padded and the model finds each row's last real token through config.pad_token_id, so a
score does not depend on what else is in its batch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification

from moalign.errors import MoalignError
from moalign.models import Prompt, check_weights, load_tokenizer, render_prompt, resolve
from moalign.objectives import Objective


def resolve_label(config, label: str | None, where: str) -> int:
    """The index of a label given as an int or as a name in config.label2id (None -> 0)."""
    if label is None:
        index = 0
    elif label.lstrip("-").isdigit():
        index = int(label)
    elif label in (config.label2id or {}):
        index = int(config.label2id[label])
    else:
        names = ", ".join(map(str, (config.label2id or {}).keys()))
        raise MoalignError(f"{where}: no label {label!r}; labels are {names} (or an index)")
    if not 0 <= index < config.num_labels:
        raise MoalignError(f"{where}: label index {index} out of range (num_labels={config.num_labels})")
    return index


class HFObjective(Objective):
    batch_size = 32

    def __init__(self, target: str, *, spec: str, name: str | None = None):
        path, _, label = target.partition("#")
        check_weights(path)
        self.path = resolve(path)
        self.label = resolve_label(AutoConfig.from_pretrained(self.path), label or None, spec)
        default = label if label and not label.lstrip("-").isdigit() else Path(self.path).name
        super().__init__(spec, name or default)
        self._model = None
        self._tokenizer = None

    def _load(self):
        if self._model is None:
            tok = load_tokenizer(self.path)
            tok.padding_side = "right"  # positions then match an unpadded forward
            from moalign.device import place
            model = place(AutoModelForSequenceClassification.from_pretrained(self.path))
            model.config.pad_token_id = tok.pad_token_id  # how the head finds the last real token
            model.config.get_text_config().pad_token_id = tok.pad_token_id
            self._model, self._tokenizer = model, tok
        return self._model, self._tokenizer

    @torch.no_grad()
    def _score(self, prompts: list[Prompt], responses: list[str]) -> np.ndarray:
        model, tok = self._load()
        texts = [render_prompt(tok, p) + " " + r for p, r in zip(prompts, responses)]
        # A chat template writes its own special tokens; a plain tokenizer adds them (e.g. [CLS]).
        special = not getattr(tok, "chat_template", None)
        device = next(model.parameters()).device
        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = tok(texts[start:start + self.batch_size], return_tensors="pt", padding=True,
                        add_special_tokens=special).to(device)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            out.append(logits[:, self.label].float().cpu().numpy())
        return np.concatenate(out)
