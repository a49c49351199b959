"""Frozen text features: what ridge reward heads (DPA), MaxMin's group reward models and PAL read.

`Featurizer(path)` embeds (prompt, response) pairs with a frozen transformer: the policy's own base
(a causal LM directory, its hidden states) or a sentence encoder (e.g. all-MiniLM-L6-v2 from a local
directory). The text is the prompt rendered as the policy sees it followed by " " + response; the
feature is the masked mean of the last hidden state, and with `pooling="mean+last"` also the last real
token's state (a causal LM's last state has read the whole text; a mean alone forgets how long it was).
Prompts alone embed the same way (PAL-B's prompt-dependent prototypes).
"""
from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from moalign.models import Prompt

Pooling = Literal["mean", "mean+last"]


class Featurizer:
    """Frozen embeddings of texts; rows in input order, float32 numpy."""

    def __init__(self, path: str, pooling: Pooling = "mean+last", batch_size: int = 64):
        from transformers import AutoModel

        from moalign.models import check_weights, load_tokenizer, resolve

        check_weights(path)
        self.path, self.pooling, self.batch_size = resolve(path), pooling, batch_size
        self.tokenizer = load_tokenizer(self.path)
        self.tokenizer.padding_side = "right"  # the last real token is at sum(mask) - 1
        from moalign.device import place
        self.model = place(AutoModel.from_pretrained(self.path))
        self.dim = self.model.config.get_text_config().hidden_size * (2 if pooling == "mean+last" else 1)

    def texts(self, prompts: Sequence[Prompt], responses: Sequence[str] | None = None) -> list[str]:
        from moalign.models import render_prompt
        rendered = [render_prompt(self.tokenizer, p) for p in prompts]
        if responses is None:
            return rendered
        return [t + " " + r for t, r in zip(rendered, responses, strict=True)]

    def __call__(self, prompts: Sequence[Prompt], responses: Sequence[str] | None = None) -> np.ndarray:
        """Features of each prompt + response (or of each prompt alone when `responses` is None)."""
        import torch

        texts = self.texts(prompts, responses)
        special = not getattr(self.tokenizer, "chat_template", None)  # templates write their own
        out = []
        device = next(self.model.parameters()).device
        with torch.no_grad():
            for i in range(0, len(texts), self.batch_size):
                b = self.tokenizer(texts[i:i + self.batch_size], return_tensors="pt", padding=True,
                                   truncation=True, add_special_tokens=special).to(device)
                h = self.model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).last_hidden_state
                m = b["attention_mask"][..., None].to(h.dtype)
                pooled = [(h * m).sum(1) / m.sum(1).clamp(min=1)]
                if self.pooling == "mean+last":
                    last = b["attention_mask"].sum(1) - 1
                    pooled.append(h[torch.arange(len(h), device=device), last])
                out.append(torch.cat(pooled, dim=-1).float().cpu().numpy())
        if not out:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.concatenate(out)
