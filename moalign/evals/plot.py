"""Plots of one or more fronts: a 2-D scatter with each method's Pareto line, or parallel
coordinates for three objectives or more. Every front must share the same objectives."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from moalign.errors import MoalignError  # noqa: E402


def front_names(fronts: Sequence[dict]) -> list[str]:
    """A name per front: its method, or where two fronts share one (two soups), the method and the
    shortest tail of its checkpoint path that tells them apart; numbered if nothing does."""
    methods = [f["method"] for f in fronts]
    parts = [Path(f.get("checkpoint") or "").parts for f in fronts]
    for k in range(max(map(len, parts)) + 1):
        names = [f"{m} {Path(*p[-k:])}" if k and p else m for m, p in zip(methods, parts)]
        if len(set(names)) == len(names):
            return names
    return [f"{m} #{i + 1}" for i, m in enumerate(methods)]


def _label(front: dict, name: str) -> str:
    hv = front.get("hypervolume")
    return f"{name} (HV {hv:.3f})" if hv is not None else name


def plot_fronts(fronts: Sequence[dict], out: str | os.PathLike, title: str | None = None) -> Path:
    if not fronts:
        raise MoalignError("plot: no fronts given")
    objectives, names = fronts[0]["objectives"], front_names(fronts)
    for f, name in zip(fronts[1:], names[1:]):
        if f["objectives"] != objectives:
            raise MoalignError(f"plot: {name} has objectives {f['objectives']}, {names[0]} has {objectives}")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    if len(objectives) == 2:
        fig, ax = plt.subplots(figsize=(6, 5))
        x_name, y_name = objectives
        for i, (f, name) in enumerate(zip(fronts, names)):
            c = colors[i % len(colors)]
            xs = [p["scores"][x_name] for p in f["points"]]
            ys = [p["scores"][y_name] for p in f["points"]]
            ax.scatter(xs, ys, color=c, alpha=0.35, s=18)
            pareto = sorted(f.get("pareto_indices", range(len(xs))), key=lambda j: xs[j])
            ax.plot([xs[j] for j in pareto], [ys[j] for j in pareto], "-o", color=c, ms=5,
                    label=_label(f, name))
        ref = fronts[0].get("reference_point")
        if ref:
            ax.plot([ref[0]], [ref[1]], "k+", ms=10, label="reference point")
        ax.set_xlabel(x_name)
        ax.set_ylabel(y_name)
    else:
        fig, ax = plt.subplots(figsize=(1.8 * len(objectives) + 2, 5))
        xs = list(range(len(objectives)))
        for i, (f, name) in enumerate(zip(fronts, names)):
            c = colors[i % len(colors)]
            pareto = set(f.get("pareto_indices", range(len(f["points"]))))
            for j, p in enumerate(f["points"]):
                ys = [p["scores"][o] for o in objectives]
                on_front = j in pareto
                ax.plot(xs, ys, color=c, alpha=0.8 if on_front else 0.15, lw=1.4 if on_front else 0.8,
                        label=_label(f, name) if j == min(pareto, default=0) else None)
        ax.set_xticks(xs, objectives)
        for x in xs:
            ax.axvline(x, color="0.8", lw=0.8, zorder=0)
        ax.set_ylabel("score (higher is better)")
    ax.set_title(title or "Pareto fronts")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
