"""Replay plots (matplotlib, no pyplot state): cost against SLA misses, and a timeline.

Both work for every scenario and read the units the scenario declares
(``report["config"]["units"]``, :attr:`traces.replay.base.Scenario.units`): every axis is
labelled with its unit and ticked in :func:`common.units.human`'s form (``1.5 M`` under
``wasted memory [GB·s]``, never a ``1e6`` offset).

* :func:`cost_vs_sla`: one curve per policy family, the cost figure (y) against the SLA
  figure (x) over its runs; in a sweep each point is labelled with the knob values that
  vary across the family's runs (``keep_alive_s=600``).
* :func:`timeline`: one panel per family over
  :attr:`traces.replay.base.RunResult.timeline`; the first numeric column after
  ``t_s`` is the demand (black), the others what the policy provisioned. Panels share
  their y-scales (left and right), so heights compare across policies. Columns in the
  demand's unit share the left axis; the others (a count beside kW) go on the right.
  ``capacity_requested`` is drawn as a wide pale band under a thin ``capacity_ready``
  line, so where the two coincide both stay visible.

Each function returns the :class:`matplotlib.figure.Figure` (also written to ``path``
when one is given), so tests can inspect what is drawn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.units import human

#: Per-column line styles where the default would hide a line under another.
STYLES: dict[str, dict[str, Any]] = {
    # requested >= ready; when they coincide the ready line shows inside the band
    "capacity_requested": {"lw": 3.0, "alpha": 0.35, "zorder": 2},
    "capacity_ready": {"lw": 1.0, "zorder": 3},
}
#: Name endings that repeat the unit (``wasted_memory_gb_s`` -> ``wasted memory``).
_UNIT_SUFFIXES = ("_gb_s", "_kwh", "_kw", "_w")


def _figure(**kw: Any) -> Any:  # noqa: ANN401 - a matplotlib Figure
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    return Figure(**kw)


def axis_label(name: str, unit: str) -> str:
    """``("wasted_memory_gb_s", "GB·s")`` -> ``"wasted memory [GB·s]"``."""
    for suffix in _UNIT_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            name = name[: -len(suffix)]
            break
    text = name.replace("_", " ")
    return f"{text} [{unit}]" if unit else text


def human_axis(axis: Any, unit: str) -> None:  # noqa: ANN401 - a matplotlib Axis
    """Tick ``axis`` in :func:`common.units.human`'s form (the label carries the unit)."""
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda v, _pos: human(v, unit, show_unit=False)))


def _varying(runs: list[dict]) -> list[str]:
    """Parameters whose value differs across a family's runs (its swept knobs)."""
    keys = dict.fromkeys(k for r in runs for k in r.get("params", {}))
    return [k for k in keys
            if len({json.dumps(r.get("params", {}).get(k), sort_keys=True) for r in runs}) > 1]


def knob_text(value: Any) -> str:  # noqa: ANN401 - a JSON value
    """Write a knob's value: numbers in :func:`common.units.human`'s form, others as str."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return human(value)


def cost_vs_sla(report: dict[str, Any], cost: str, sla: str, path: Path | None = None) -> Any:  # noqa: ANN401
    """One curve per policy family: cost (y) against SLA misses (x), knob values beside points.

    Returns:
        The Figure (written to ``path`` when given).

    """
    units = report.get("config", {}).get("units") or {}
    fig = _figure(figsize=(7.5, 5.2), dpi=110)
    ax = fig.subplots()
    for name, runs in report["policies"].items():
        pts = [(r["totals"].get(sla), r["totals"].get(cost), r) for r in runs]
        # in grid order, so the curve follows the family's knob
        pts = [(x, y, r) for x, y, r in pts if x is not None and y is not None]
        if not pts:
            continue
        knobs = _varying([r for _, _, r in pts])
        xs = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        label = f"{name} ({', '.join(knobs)})" if knobs else name
        (line,) = ax.plot(xs, ys, marker="o", linestyle="-" if len(pts) > 1 else "none",
                          label=label)
        for x, y, r in pts if knobs else []:
            text = ", ".join(f"{k}={knob_text(r['params'].get(k))}" for k in knobs)
            ax.annotate(text, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7,
                        color=line.get_color(), gid=f"knob:{name}")
    ax.set_xlabel(axis_label(sla, units.get(sla, "")))
    ax.set_ylabel(axis_label(cost, units.get(cost, "")))
    human_axis(ax.xaxis, units.get(sla, ""))
    human_axis(ax.yaxis, units.get(cost, ""))
    ax.set_title(f"{report['scenario']}: cost against SLA misses")
    ax.grid(True, alpha=0.3)
    if report["policies"]:
        ax.legend(fontsize=8, title="policy (knob)", title_fontsize=8)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig


def _sides(timelines: dict[str, pd.DataFrame], units: dict[str, str]) -> tuple[list[str], str,
                                                                               dict[str, bool]]:
    """Columns to draw, the demand's unit, and per column whether it goes on the right axis.

    Decided once for all panels, so a column sits on the same side in each of them: by unit
    when the units are known, else by scale (peak more than 20 times off the demand's).
    """
    cols: list[str] = []
    for tl in timelines.values():
        for c in tl.columns:
            if c != "t_s" and c not in cols and pd.api.types.is_numeric_dtype(tl[c]):
                cols.append(c)
    if not cols:
        return cols, "", {}

    def peak(c: str) -> float:
        vals = [np.nanmax(np.abs(tl[c].to_numpy(dtype=float)))
                for tl in timelines.values() if c in tl and len(tl)]
        return float(max(vals)) if vals else 0.0

    demand_unit = units.get(cols[0], "")
    ref = peak(cols[0])
    right = {}
    for i, c in enumerate(cols):
        if i == 0:
            right[c] = False
        elif demand_unit and units.get(c):
            right[c] = units[c] != demand_unit
        else:
            p = peak(c)
            right[c] = ref > 0 and p > 0 and not 0.05 <= p / ref <= 20
    return cols, demand_unit, right


def timeline(timelines: dict[str, pd.DataFrame], path: Path | None = None, title: str = "",
             units: dict[str, str] | None = None,
             labels: dict[str, str] | None = None) -> Any:  # noqa: ANN401
    """One panel per family: demand against what the policy provisioned, over time.

    Args:
        timelines: family -> its timeline frame (``t_s`` first, seconds).
        path: where to write the PNG (None: only return the Figure).
        title: the figure's title.
        units: unit of each column (the report's ``config["units"]``).
        labels: family -> panel label (default the family's name), e.g. the swept run
            drawn: ``"hpa target=0.7"``.

    Returns:
        The Figure.

    """
    units = units or {}
    n = max(1, len(timelines))
    fig = _figure(figsize=(10, 2.4 * n + 0.8), dpi=100)
    axes = fig.subplots(n, 1, sharex=True, sharey=True, squeeze=False)[:, 0]
    if not timelines:
        axes[0].text(0.5, 0.5, "no timeline recorded", ha="center", va="center")
    cols, demand_unit, right = _sides(timelines, units)
    right_units = sorted({units.get(c, "") for c in cols if right.get(c)} - {""})
    twins: list[Any] = []
    for ax, (name, tl) in zip(axes, timelines.items(), strict=False):
        t = tl["t_s"].to_numpy(dtype=float)
        t = (t - t[0]) / 3600.0 if len(t) else t
        twin = None
        lines = []
        for i, c in enumerate(cols):
            if c not in tl:
                continue
            y = tl[c].to_numpy(dtype=float)
            if right[c] and twin is None:
                twin = ax.twinx()
                if twins:
                    twin.sharey(twins[0])
                twins.append(twin)
                twin.set_ylabel(f"[{', '.join(right_units)}]" if right_units else "right")
                human_axis(twin.yaxis, right_units[0] if len(right_units) == 1 else "")
            target = twin if right[c] else ax
            if i == 0:
                style: dict[str, Any] = {"color": "black", "lw": 0.8, "zorder": 4}
            else:
                style = {"lw": 1.0, "drawstyle": "steps-post", "color": f"C{i - 1}",
                         **STYLES.get(c, {})}
            if right[c]:
                style["linestyle"] = "--"
            lines += target.plot(t, y, label=c + (" (right)" if right[c] else ""), **style)
        label = (labels or {}).get(name, name)
        ax.set_ylabel(f"{label}\n[{demand_unit}]" if demand_unit else label)
        human_axis(ax.yaxis, demand_unit)
        ax.grid(True, alpha=0.3)
        if lines:
            ax.legend(lines, [ln.get_label() for ln in lines], fontsize=7, loc="upper right")
    axes[-1].set_xlabel("time from trace start [h]")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path)
    return fig
