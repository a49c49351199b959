"""A compare's HTML report: one self-contained file (compare.html beside compare.md) that opens in a
browser without a server: compare.md's tables, the fronts' plot inline, and each method's sample
answers at three preferences (both ends and the middle of its front)."""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:.3em .6em;text-align:left}
th{background:#f0f0f0}img{max-width:100%}.answer{white-space:pre-wrap;background:#f7f7f7;padding:.4em;
margin:.2em 0 .8em}.prompt{font-weight:600}"""


def _inline(text: str) -> str:
    """A markdown cell as HTML: escaped, with **bold** kept."""
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", html.escape(text))


def markdown_tables(md: str) -> str:
    """compare.md as HTML: its heading and its pipe tables (the only markdown it writes)."""
    parts, rows = [], []

    def flush() -> None:
        if rows:
            head, body = rows[0], rows[2:]
            cells = "".join(f"<th>{_inline(c)}</th>" for c in head)
            lines = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in r) + "</tr>" for r in body)
            parts.append(f"<table><thead><tr>{cells}</tr></thead><tbody>{lines}</tbody></table>")
            rows.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        flush()
        if line.startswith("# "):
            parts.append(f"<h1>{_inline(line[2:])}</h1>")
    flush()
    return "\n".join(parts)


def _samples(front: dict, per_point: int = 2) -> str:
    """Answers at the front's two ends and its middle preference."""
    points = sorted(front["points"], key=lambda p: tuple(p["preference"].values()))
    picked = [points[0], points[len(points) // 2], points[-1]] if len(points) >= 3 else points
    out = []
    for point in picked:
        pref = ", ".join(f"{k}={v:g}" for k, v in point["preference"].items())
        scores = ", ".join(f"{k} {v:.3f}" for k, v in point["scores"].items())
        out.append(f"<h4>{html.escape(pref)} <small>(mean scores: {html.escape(scores)})</small></h4>")
        for s in point.get("samples", [])[:per_point]:
            out.append(f'<div class="prompt">{html.escape(s["prompt"])}</div>'
                       f'<div class="answer">{html.escape(s["response"])}</div>')
    return "\n".join(out)


def write_report(out: Path, md: str, fronts: list[dict], plot: Path | None) -> Path:
    """Write out/compare.html; returns its path."""
    body = [markdown_tables(md)]
    if plot is not None and Path(plot).is_file():
        data = base64.b64encode(Path(plot).read_bytes()).decode()
        body.append(f'<h2>Fronts</h2><img id="fronts" alt="fronts" src="data:image/png;base64,{data}">')
    if fronts:
        body.append("<h2>Sample answers</h2>")
        body += [f"<h3>{html.escape(f['method'])}</h3>\n{_samples(f)}" for f in fronts]
    title = html.escape(md.splitlines()[0].lstrip("# ")) if md else "moalign compare"
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
    path = Path(out) / "compare.html"
    path.write_text(page, encoding="utf-8")
    return path
