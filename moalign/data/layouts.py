"""Pairwise rows without a prompt column, as two public layouts ship them:

- Anthropic HH-RLHF: `chosen` and `rejected` are whole transcripts, "\\n\\nHuman: ...\\n\\nAssistant: ...".
- TRL's implicit-prompt preference format: `chosen` and `rejected` are whole conversations (message lists).

Both are split at the last assistant turn: what comes before it (the same in both transcripts) is the
prompt, as a message list, and the last assistant turn is the response.
"""
from __future__ import annotations

import re

import datasets

from moalign.errors import MoalignError

_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def transcript_messages(text: str) -> list[dict] | None:
    """An HH-RLHF transcript as messages; None when it is not one (text before the first turn)."""
    parts = _TURN.split(text)
    if parts[0].strip() or len(parts) < 3:
        return None
    return [{"role": _ROLES[role], "content": body.strip()} for role, body in zip(parts[1::2], parts[2::2])]


def _split(conversation) -> tuple[list[dict], str] | None:
    """(prompt messages, last assistant answer) of a transcript or a message list."""
    messages = transcript_messages(conversation) if isinstance(conversation, str) else conversation
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        return None
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    if last is None or not isinstance(messages[last].get("content"), str):
        return None
    prompt = [{"role": m["role"], "content": m["content"]} for m in messages[:last]]
    return (prompt, messages[last]["content"]) if prompt else None


def split_transcripts(ds: datasets.Dataset, name: str) -> datasets.Dataset:
    """prompt/chosen/rejected from chosen/rejected transcripts (HH-RLHF) or conversations (TRL)."""
    if not {"chosen", "rejected"} <= set(ds.column_names):
        return ds  # the missing columns are reported by the caller
    rows = {"prompt": [], "chosen": [], "rejected": []}
    for i, (chosen, rejected) in enumerate(zip(ds["chosen"], ds["rejected"])):
        a, b = _split(chosen), _split(rejected)
        if a is None or b is None:
            raise MoalignError(
                f"{name}: no prompt column, and row {i + 1}'s {'chosen' if a is None else 'rejected'} is "
                "not a transcript ('\\n\\nHuman: ...\\n\\nAssistant: ...') or a conversation ending in an "
                "assistant message (map the prompt column with columns: {prompt: FILE_COLUMN})")
        if a[0] != b[0]:
            raise MoalignError(f"{name}: row {i + 1}: chosen and rejected differ before their last "
                               "assistant turn, so they share no prompt")
        rows["prompt"].append(a[0])
        rows["chosen"].append(a[1])
        rows["rejected"].append(b[1])
    out = datasets.Dataset.from_dict(rows)
    for col in ds.column_names:
        if col not in rows:
            out = out.add_column(col, ds[col])
    return out
