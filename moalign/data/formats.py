"""Data formats: load a file (or a hub dataset) as one of moalign's formats and check it.

See docs/data.md. `load_data(path, format)` reads JSONL/JSON, Parquet, CSV, a
`save_to_disk` folder or a hub name through `datasets`, renames columns by a column map, and checks
the rows; anything wrong is a `MoalignError` with one line naming the file, the row and the column.
Text columns may hold plain strings or chat message lists; a response given as messages becomes the
content of its last assistant message. Prompts stay as given.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import datasets

from moalign.errors import MoalignError

# Required columns per format; `pairwise_multi` adds better_<obj>, `scored` adds score_<obj>.
FORMATS: dict[str, tuple[str, ...]] = {
    "pairwise": ("prompt", "chosen", "rejected"),
    "pairwise_multi": ("prompt", "response_0", "response_1"),
    "scored": ("prompt", "response"),
    "user_pairwise": ("user_id", "prompt", "chosen", "rejected"),
    "prompts": ("prompt",),
    "sft": ("prompt", "response"),
}
_OBJECTIVE_PREFIX = {"pairwise_multi": "better_", "scored": "score_"}
_RESPONSES = ("chosen", "rejected", "response", "response_0", "response_1")
_TEXT = ("prompt", *_RESPONSES)
_BUILDERS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
_HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0][:200] if text else "") or type(e).__name__


def _split_of(path: str | PathLike, split: str | None) -> tuple[str | PathLike, str | None]:
    """`path#split` -> (path, split); a `split` argument wins only when the path names none."""
    text = str(path)
    if "#" in text and not Path(text).expanduser().exists():
        text, _, named = text.rpartition("#")
        return text, named or split
    return path, split


def _pick_split(ds, split: str | None, name: str) -> datasets.Dataset:
    """One split of a DatasetDict: the one asked for, else `train`, else its only split."""
    if not isinstance(ds, datasets.DatasetDict):
        return ds
    if split is None and len(ds) == 1:
        return next(iter(ds.values()))
    want = split or "train"
    if want not in ds:
        raise MoalignError(f"{name}: no split {want!r} (splits: {', '.join(ds)}; pick one with "
                           f"{name}#SPLIT)")
    return ds[want]


def _read(path: str | PathLike, split: str | None) -> tuple[datasets.Dataset, str]:
    """The raw dataset and the name to use for it in messages."""
    path, split = _split_of(path, split)
    p = Path(path).expanduser()
    if not p.exists():
        name = str(path)
        if _HUB_ID.match(name) and p.suffix.lower() not in _BUILDERS:
            try:
                if split:  # one split only: a hub dataset's other splits are not downloaded
                    return datasets.load_dataset(name, split=split), name
                return _pick_split(datasets.load_dataset(name), None, name), name
            except MoalignError:
                raise
            except Exception as e:
                raise MoalignError(f"{name}: not a local file, and loading it from the Hub failed: "
                                   f"{_first_line(e)}") from None
        raise MoalignError(f"{name}: no such file or directory")
    p = p.resolve()
    if p.is_dir():
        try:
            ds = datasets.load_from_disk(str(p))
        except Exception as e:
            raise MoalignError(f"{p}: not a dataset saved with save_to_disk: {_first_line(e)}") from None
        return _pick_split(ds, split, str(p)), str(p)
    builder = _BUILDERS.get(p.suffix.lower())
    if builder is None:
        raise MoalignError(f"{p}: unsupported file type {p.suffix!r} (use .jsonl, .json, .parquet, "
                           f".csv or a save_to_disk directory)")
    if split not in (None, "train"):
        raise MoalignError(f"{p}: a single file has no split {split!r} (only a save_to_disk folder "
                           "or a hub dataset has splits)")
    if p.stat().st_size == 0:
        raise MoalignError(f"{p}: empty dataset (no rows)")
    try:
        return datasets.load_dataset(builder, data_files=str(p), split="train"), str(p)
    except Exception as e:
        if isinstance(e, StopIteration) or "corresponds to no data" in str(e):
            raise MoalignError(f"{p}: empty dataset (no rows)") from None
        raise MoalignError(f"{p}: could not read it as {builder}: {_first_line(e)}") from None


def _is_standard(column: str) -> bool:
    """A column name moalign's formats use."""
    return any(column in cols for cols in FORMATS.values()) or column.startswith(("better_", "score_"))


def _rename(ds: datasets.Dataset, columns: Mapping[str, str], name: str) -> datasets.Dataset:
    """Rename by `columns` (moalign name -> file column); a map written the other way is named so."""
    have = set(ds.column_names)
    for std, src in columns.items():
        if src not in have and std in have and _is_standard(src):
            raise MoalignError(f"{name}: column map {{{std}: {src}}} runs the wrong way: it goes moalign "
                               f"name -> file column, and the file has {std!r}, not {src!r} "
                               f"(write {{{src}: {std}}})")
    mapping = {src: std for std, src in columns.items() if src != std}
    absent = [src for src in mapping if src not in have]
    if absent:
        raise MoalignError(f"{name}: column map (moalign name -> file column) names file column(s) "
                           f"{', '.join(absent)} not in the file (it has: {', '.join(ds.column_names)})")
    new = [mapping.get(c, c) for c in ds.column_names]
    clash = sorted({c for c in new if new.count(c) > 1})
    if clash:
        raise MoalignError(f"{name}: column map gives more than one column the name(s) "
                           f"{', '.join(clash)}")
    return ds.rename_columns(mapping) if mapping else ds


def _is_messages(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in v)


def _assistant_text(messages: list[dict]) -> str | None:
    for m in reversed(messages):
        if m["role"] == "assistant":
            return m["content"]
    return None


def _where(i: int, col: str, source: Mapping[str, str]) -> str:
    """`row N, column 'C'`: N counts from 1 (line N of a JSONL file), C is the file's own name."""
    file_col = source.get(col, col)
    named = f"column {file_col!r}" + (f" (moalign's {col!r})" if file_col != col else "")
    return f"row {i + 1}, {named}"


def _check(ds: datasets.Dataset, fmt: str, objectives: Sequence[str], name: str,
           source: Mapping[str, str]) -> datasets.Dataset:
    """Validate the rows; return the dataset with message-list responses turned into strings.
    `source` maps moalign's column names to the file's, for the messages."""
    convert = []
    for col in (c for c in FORMATS[fmt] if c in _TEXT):
        has_messages = False
        for i, v in enumerate(ds[col]):
            if isinstance(v, str):
                continue
            if not _is_messages(v):
                what = ("is None" if v is None
                        else "is neither a string nor a list of {role, content} messages")
                raise MoalignError(f"{name}: {_where(i, col, source)} {what}")
            if col in _RESPONSES and _assistant_text(v) is None:
                raise MoalignError(f"{name}: {_where(i, col, source)} has no assistant message")
            has_messages = True
        if has_messages and col in _RESPONSES:
            convert.append(col)
    if "user_id" in FORMATS[fmt]:
        for i, v in enumerate(ds["user_id"]):
            if v is None:
                raise MoalignError(f"{name}: {_where(i, 'user_id', source)} is None")
    for obj in objectives:
        if fmt == "pairwise_multi":
            col = f"better_{obj}"
            for i, v in enumerate(ds[col]):
                if isinstance(v, str) or v is None or v not in (0, 1):
                    raise MoalignError(f"{name}: {_where(i, col, source)} is {v!r}, "
                                       f"not a label in {{0, 1}}")
        else:
            col = f"score_{obj}"
            for i, v in enumerate(ds[col]):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise MoalignError(f"{name}: {_where(i, col, source)} is {v!r}, not a finite number")
    if convert:
        ds = ds.map(lambda b: {c: [v if isinstance(v, str) else _assistant_text(v) for v in b[c]]
                               for c in convert}, batched=True)
    return ds


def load_data(path: str | PathLike, format: str, *, objectives: Sequence[str] = (),
              columns: Mapping[str, str] | None = None, split: str | None = None) -> datasets.Dataset:
    """Load `path` as `format` (a key of FORMATS), renaming columns by `columns` (standard -> file).

    `path#SPLIT` (or `split`) picks a split of a saved DatasetDict or hub dataset (default: `train`,
    or the only split). For `pairwise_multi` and `scored`, `objectives` names the better_<obj> /
    score_<obj> columns; when empty they are inferred from the column names. Pairwise rows without a
    prompt column (Anthropic HH-RLHF transcripts, TRL's implicit-prompt conversations) are split at
    the last assistant turn. Raises MoalignError on any bad input.
    """
    if format not in FORMATS:
        raise MoalignError(f"unknown data format {format!r} (choose from: {', '.join(FORMATS)})")
    ds, name = _read(path, split)
    return check_data(ds, name, format, objectives=objectives, columns=columns)


def check_data(ds: datasets.Dataset, name: str, format: str, *, objectives: Sequence[str] = (),
               columns: Mapping[str, str] | None = None) -> datasets.Dataset:
    """`load_data` on a dataset already read (`name` is the file, for messages)."""
    from moalign.data.layouts import split_transcripts

    file_columns = ", ".join(ds.column_names)
    ds = _rename(ds, columns or {}, name)
    if len(ds) == 0:
        raise MoalignError(f"{name}: empty dataset (no rows)")
    if "chosen" in FORMATS[format] and "prompt" not in ds.column_names:
        ds = split_transcripts(ds, name)
    prefix = _OBJECTIVE_PREFIX.get(format)
    objectives = list(objectives)
    if prefix and not objectives:
        objectives = [c[len(prefix):] for c in ds.column_names if c.startswith(prefix)]
        if not objectives:
            raise MoalignError(f"{name}: format {format!r} needs at least one {prefix}<objective> "
                               f"column (it has: {', '.join(ds.column_names)})")
    required = list(FORMATS[format]) + [f"{prefix}{o}" for o in objectives if prefix]
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise MoalignError(f"{name}: missing column(s) {', '.join(missing)} for format {format!r} "
                           f"(it has: {file_columns}; map a file column to one with "
                           f"columns: {{{missing[0]}: FILE_COLUMN}})")
    source = {std: src for std, src in (columns or {}).items()}
    return _check(ds, format, objectives if prefix else [], name, source)


def to_pairwise(ds_multi: datasets.Dataset, objective: str) -> datasets.Dataset:
    """pairwise_multi rows -> prompt/chosen/rejected for one objective.

    better_<obj> == 1 means response_1 is the better one. Other columns are kept, except response_0,
    response_1 and the better_* labels.
    """
    label = f"better_{objective}"
    missing = [c for c in ("prompt", "response_0", "response_1", label) if c not in ds_multi.column_names]
    if missing:
        raise MoalignError(f"to_pairwise: missing column(s) {', '.join(missing)} "
                           f"(it has: {', '.join(ds_multi.column_names)})")

    def pick(b: dict) -> dict:
        rows = list(zip(b[label], b["response_0"], b["response_1"]))
        return {"chosen": [r1 if int(v) == 1 else r0 for v, r0, r1 in rows],
                "rejected": [r0 if int(v) == 1 else r1 for v, r0, r1 in rows]}

    drop = [c for c in ds_multi.column_names
            if c in ("response_0", "response_1", "chosen", "rejected") or c.startswith("better_")]
    return ds_multi.map(pick, batched=True, remove_columns=drop)
