"""Replay plots (matplotlib, Agg backend): cost against SLA misses, and a timeline.

Both work for every scenario: the cost-versus-SLA plot reads the report's
``cost_figure``/``sla_figure`` totals; the timeline plots the numeric columns of each
family's :attr:`traces.replay.base.RunResult.timeline` (first column ``t_s``, seconds; the
first numeric column after it is the demand, drawn in black; the others are what the policy
provisioned: capacity, warm instances, row power...).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def cost_vs_sla(report: dict[str, Any], cost: str, sla: str, path: Path) -> None:
    """One curve per policy family: cost (y) against SLA misses (x) over its runs."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for name, runs in report["policies"].items():
        pts = [(r["totals"].get(sla), r["totals"].get(cost)) for r in runs]
        # in grid order, so the curve follows the family's knob
        pts = [(x, y) for x, y in pts if x is not None and y is not None]
        if not pts:
            continue
        xs, ys = zip(*pts, strict=True)
        ax.plot(xs, ys, marker="o", linestyle="-" if len(pts) > 1 else "none",
                label=f"{name} ({len(pts)})")
    ax.set_xlabel(sla.replace("_", " "))
    ax.set_ylabel(cost.replace("_", " "))
    ax.set_title(f"{report['scenario']}: cost against SLA misses")
    ax.grid(True, alpha=0.3)
    if report["policies"]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def timeline(timelines: dict[str, pd.DataFrame], path: Path, title: str = "") -> None:
    """One panel per family: demand against what the policy provisioned, over time."""
    plt = _plt()
    n = max(1, len(timelines))
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.4 * n + 0.6), dpi=100, sharex=True,
                             squeeze=False)
    if not timelines:
        axes[0, 0].text(0.5, 0.5, "no timeline recorded", ha="center", va="center")
    for ax, (name, tl) in zip(axes[:, 0], timelines.items(), strict=False):
        t = tl["t_s"].to_numpy(dtype=float)
        t = (t - t[0]) / 3600.0 if len(t) else t
        cols = [c for c in tl.columns if c != "t_s" and pd.api.types.is_numeric_dtype(tl[c])]
        ref = float(np.nanmax(np.abs(tl[cols[0]].to_numpy(dtype=float)))) if cols else 0.0
        twin = None
        lines = []
        for i, c in enumerate(cols):
            y = tl[c].to_numpy(dtype=float)
            peak = float(np.nanmax(np.abs(y))) if len(y) else 0.0
            # a series on another scale (a count beside kW) goes on a right-hand axis
            other = i > 0 and ref > 0 and peak > 0 and not 0.05 <= peak / ref <= 20
            if other and twin is None:
                twin = ax.twinx()
            target = twin if other else ax
            style = ({"color": "black", "lw": 0.8} if i == 0
                     else {"lw": 1.0, "drawstyle": "steps-post", "color": f"C{i - 1}"})
            if other:
                style["linestyle"] = "--"
            lines += target.plot(t, y, label=c + (" (right)" if other else ""), **style)
        ax.set_ylabel(name)
        ax.grid(True, alpha=0.3)
        if lines:
            ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("hours from trace start")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
