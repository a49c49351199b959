"""The docs' generated parts: each method page's recipe-key table (from its `Config`'s field
descriptions) and the methods index (from the registry). `python -m moalign.docs` rewrites them;
a test fails when a page drifts from the code."""
from __future__ import annotations

import importlib
import json
import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

BEGIN = "<!-- keys: generated from the Config's Field descriptions (python -m moalign.docs) -->"
END = "<!-- /keys -->"
INDEX_BEGIN = "<!-- methods: generated from moalign/registry.py (python -m moalign.docs) -->"
INDEX_END = "<!-- /methods -->"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "methods"


def _models(annotation) -> list[type[BaseModel]]:
    """The pydantic models a field holds (a model, an optional one, or a union of them)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if typing.get_origin(annotation) is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    args = typing.get_args(annotation)
    if args and typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [m for a in args for m in _models(a)]
    return []


def _value(info):
    """A field's default (PydanticUndefined when the key is required)."""
    return info.default_factory() if info.default_factory is not None else info.default


def _default(value) -> str:
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        return "see below"
    if value is None:
        return "none"
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def key_rows(config: type[BaseModel], prefix: str = "", variant: str = "",
             defaults: BaseModel | None = None) -> list[tuple[str, str, str]]:
    """(key, default, description) for every key of a recipe, nested keys dotted; a key that holds
    one of several models (the soup's RL or DPO expert) lists each one's keys, tagged. Nested keys
    show their parent's default where it is a model (CLP's `rl` is RL(steps=300, ...))."""
    rows = []
    for name, info in config.model_fields.items():
        key = prefix + name
        value = getattr(defaults, name) if defaults is not None else _value(info)
        rows.append((key + variant, _default(value), info.description or ""))
        models = _models(info.annotation)
        for model in models:
            rows += key_rows(model, f"{key}.", "" if len(models) == 1 else f" ({model.__name__})",
                             value if isinstance(value, model) else None)
    return rows


def key_table(config: type[BaseModel]) -> str:
    lines = ["| key | default | meaning |", "|---|---|---|"]
    lines += [f"| `{k}` | {d.replace('|', '/')} | {m} |" for k, d, m in key_rows(config)]
    return "\n".join(lines) + "\n"


def _replace(text: str, begin: str, end: str, body: str, where: str) -> str:
    if begin not in text or end not in text:
        raise ValueError(f"{where}: no generated block ({begin} ... {end})")
    return re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: f"{begin}\n{body}{end}", text,
                  flags=re.S)


def pages() -> dict[Path, str]:
    """Each docs page as it should read."""
    from moalign.registry import REGISTRY, docs_index
    out = {}
    index = DOCS / "README.md"
    out[index] = _replace(index.read_text(), INDEX_BEGIN, INDEX_END, docs_index(), str(index))
    for m in REGISTRY:
        page = DOCS / f"{m.name}.md"
        config = importlib.import_module(m.module).Config
        out[page] = _replace(page.read_text(), BEGIN, END, key_table(config), str(page))
    return out


def main() -> int:
    for p, text in pages().items():
        if p.read_text() != text:
            p.write_text(text)
            print(f"rewrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
