"""Highest oversubscription each power policy sustains on a row, by an ascending scan.

For a row (a trace plus the power scenario's options) the ratio ``servers / budget_servers``
is scanned upwards from ``--start`` in steps of ``--step-ratio`` (default 1.0 → 3.0 by 0.05).
At each ratio every policy is replayed through :class:`traces.replay.power.PowerScenario`
(the same ``run`` that ``tidewise replay`` drives, the same forecaster choice), and a ratio
*passes* when the row has **zero breach steps and a capped fraction ≤ ``--max-capped``**
(default 0.01 of server-time). The answer per policy is the highest ratio below the first
failing one (every lower ratio of the scan passed). With ``--fine-step`` the scan is coarse
first (e.g. ``--step-ratio 0.25``), then rescans between the coarse answer and the coarse
first failure in fine steps, stopping at the first fine failure (fewer runs on a row that
holds 4×; a fine ratio is only tried when the coarse ratio below it passed). The
criterion is only monotone-ish (extra servers replay series at other offsets, so a larger
row is not a superset of a smaller one in time), so the scan does not bisect: it goes on
until ``--patience``
consecutive ratios fail (default 2) and flags a policy whose scan passed again above its
first failure (``passes_above``). Reported: the figures at the answer and at the next
step above (the first failure).

Rows (``--row``):

* ``h100`` — the four 8×H100 training logs (32 GPUs, one GPU = one server), ``--step 1``,
  nameplate 700 W, idle 70 W (as in the power tables of docs/replay-scenarios.md).
* ``genai`` — an inference row from the Alibaba GenAI 2026 pods' GPU duty cycle
  (``pod_gpu_duty_cycle_anon``): ``P = 70 W + (700 − 70) W × duty/100``, one pod = one
  GPU = one server, 57 s steps (the trace's own spacing), one clock. Pods: of those whose
  series spans ≥ 90 % of the trace, the ``--pods`` (32, the size of the H100 row) with the
  highest mean duty cycle, ties by name — deterministic, and the busiest pods (a mostly idle
  inference pod tells nothing about capping).

Examples::

    .venv/bin/python bench/oversub.py --row h100 --out out/oversub-h100.json
    .venv/bin/python bench/oversub.py --row genai --stop 6 --step-ratio 0.25 --fine-step 0.05
    .venv/bin/python bench/oversub.py --row h100 --param bayes.target_breach=0.001
    .venv/bin/python bench/oversub.py --row genai --policies bayes --explain 3.25

``--explain RATIO`` scans nothing: it replays each policy at that ratio and prints, for
every breach step, the decisions whose caps were in force then and their ``why`` (for
``bayes`` the forecast's P(breach) with and without caps): a missed tail or a rule's choice.

``--param NAME.k=v`` sets a policy parameter; the row label then names it, so a tried
parameter is reported as its own row, never as the policy's default.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIGURES = ("servers", "breach_steps", "capped_fraction", "performance_lost",
           "demand_breach_steps")


@dataclass(frozen=True)
class Row:
    """A row to oversubscribe: a trace, its load step (s) and the power scenario's options."""

    name: str
    trace: Path
    step_s: float
    options: dict[str, Any] = field(default_factory=dict)


def rows(data: Path = DATA) -> dict[str, Row]:
    """The two rows of issue 11 (see the module docstring)."""
    gpu = {"p_max_w": 700.0, "p_idle_w": 70.0}
    return {
        "h100": Row("h100", data / "gpu-power-h100-training-wilkins", 1.0, dict(gpu)),
        "genai": Row("genai", data / "alibaba-genai-2026" / "pod_gpu_duty_cycle_anon.tar.gz",
                     57.0, {**gpu, "metric": "gpu_util", "align": "time"}),
    }


def busiest_pods(frame: pd.DataFrame, pods: int = 32, metric: str = "gpu_util",
                 min_cover: float = 0.9) -> pd.DataFrame:
    """Keep the ``pods`` series with the highest mean ``metric`` among those spanning most
    of the trace (≥ ``min_cover`` of the union span); ties by name. Attrs are kept.

    Raises:
        ValueError: fewer such series than ``pods``.

    """
    rows_ = frame[frame["metric"] == metric]
    g = rows_.groupby(rows_["entity"].astype(str))
    stats = pd.DataFrame({"lo": g["ts"].min(), "hi": g["ts"].max(), "mean": g["value"].mean()})
    union = stats["hi"].max() - stats["lo"].min()
    full = stats[(stats["hi"] - stats["lo"]) >= min_cover * union]
    if len(full) < pods:
        raise ValueError(f"only {len(full)} {metric} series span {min_cover:.0%} of the "
                         f"trace; asked for {pods}")
    full = full.reset_index(names="entity").sort_values(["mean", "entity"],
                                                        ascending=[False, True])
    keep = set(full["entity"].head(pods))
    out = rows_[rows_["entity"].astype(str).isin(keep)].reset_index(drop=True)
    out.attrs = dict(frame.attrs)
    return out


def load_row(row: Row, pods: int = 32) -> pd.DataFrame:
    """Load a row's trace on its step (the GenAI row: its busiest full-span pods)."""
    import traces

    frame = traces.load(row.trace, step=row.step_s)
    if row.name == "genai":
        frame = busiest_pods(frame, pods)
    return frame


def passes(totals: dict[str, float], max_capped: float = 0.01) -> bool:
    """Zero breach steps and at most ``max_capped`` of server-time under a cap."""
    return totals["breach_steps"] == 0 and totals["capped_fraction"] <= max_capped + 1e-12


def ratio_grid(start: float = 1.0, stop: float = 3.0, step: float = 0.05) -> list[float]:
    """Ratios ``start, start + step, …, stop`` rounded to 4 decimals (no float drift)."""
    n = int(round((stop - start) / step))
    return [round(start + i * step, 4) for i in range(n + 1)]


def highest_ratio(run_at: Callable[[float], dict[str, float]], ratios: Sequence[float],
                  max_capped: float = 0.01, patience: int = 2) -> dict[str, Any]:
    """Scan ``ratios`` upwards; return the highest ratio below the first failure.

    ``run_at(r)`` returns the replay totals at ratio ``r``. The scan stops once ``patience``
    consecutive ratios fail (or the grid ends). Returns ``ratio`` (None if the first ratio
    already fails), ``at`` (its totals), ``next_ratio`` / ``next`` (the first failure; None
    if none was seen), ``passes_above`` (ratios above the first failure that passed again)
    and ``points`` (every ratio run, with its totals and verdict).
    """
    points: list[dict[str, Any]] = []
    fails_in_row = 0
    for r in ratios:
        tot = run_at(r)
        ok = passes(tot, max_capped)
        points.append({"ratio": r, "pass": ok, "totals": tot})
        fails_in_row = 0 if ok else fails_in_row + 1
        if fails_in_row >= patience:
            break
    first_fail = next((i for i, p in enumerate(points) if not p["pass"]), None)
    best = (len(points) if first_fail is None else first_fail) - 1
    return {
        "ratio": points[best]["ratio"] if best >= 0 else None,
        "at": points[best]["totals"] if best >= 0 else None,
        "next_ratio": points[first_fail]["ratio"] if first_fail is not None else None,
        "next": points[first_fail]["totals"] if first_fail is not None else None,
        "passes_above": [p["ratio"] for p in points[(first_fail or len(points)):] if p["pass"]],
        "points": points,
    }


def refined_ratio(run_at: Callable[[float], dict[str, float]], ratios: Sequence[float],
                  fine_step: float | None, max_capped: float = 0.01, patience: int = 2
                  ) -> dict[str, Any]:
    """:func:`highest_ratio` on the coarse ``ratios``, then on ``fine_step`` steps between
    the coarse answer and the coarse first failure (exclusive), to save runs on rows that
    hold far more than 1×. The fine scan's first failure, or else the coarse one, is
    ``next``; ``points`` holds both scans' points, ``passes_above`` the coarse scan's.
    """
    coarse = highest_ratio(run_at, ratios, max_capped, patience)
    if not fine_step or coarse["ratio"] is None or coarse["next_ratio"] is None:
        return coarse
    fine = ratio_grid(coarse["ratio"] + fine_step, coarse["next_ratio"] - fine_step,
                      fine_step) if coarse["next_ratio"] - coarse["ratio"] > \
        fine_step * 1.5 else []
    if not fine:
        return coarse
    res = highest_ratio(run_at, fine, max_capped, patience=1)
    out = dict(coarse)
    if res["ratio"] is not None:
        out["ratio"], out["at"] = res["ratio"], res["at"]
    if res["next_ratio"] is not None:
        out["next_ratio"], out["next"] = res["next_ratio"], res["next"]
    out["points"] = sorted(coarse["points"] + res["points"], key=lambda p: p["ratio"])
    return out


def scan_policy(frame: pd.DataFrame, options: dict[str, Any], policy: str,
                params: dict[str, Any], ratios: Sequence[float], *, max_capped: float = 0.01,
                patience: int = 2, seed: int = 0, log: Callable[[str], None] | None = None,
                fine_step: float | None = None) -> dict[str, Any]:
    """:func:`refined_ratio` for one policy on one row, through the power scenario."""
    from policies import registry
    from policies.pipeline import forecaster_for
    from traces.replay.power import PowerScenario

    def run_at(r: float) -> dict[str, float]:
        sc = PowerScenario(**{**options, "oversubscription": float(r)})
        data = sc.prepare(frame)
        pol = registry.create(policy, "power", **params)
        t0 = time.perf_counter()
        tot = sc.run(pol, data, seed=seed, forecaster=forecaster_for(pol, seed)).totals
        if log is not None:
            log(f"  {policy} {r:.2f}x: servers={tot['servers']:.0f} "
                f"breaches={tot['breach_steps']:.0f} capped={tot['capped_fraction']:.4f} "
                f"lost={tot['performance_lost']:.4%} ({time.perf_counter() - t0:.1f}s)")
        return {k: float(v) for k, v in tot.items() if isinstance(v, int | float)}

    return refined_ratio(run_at, ratios, fine_step, max_capped, patience)


def governing(t: int, step_s: float, delay_s: float) -> list[int]:
    """Decisions whose caps were in force during step ``t`` (the replay's actuation model).

    A cap decided before step ``d`` acts ``delay_s`` later: with ``delay_s = q·step + r``
    the first ``r`` seconds of step ``t`` run under decision ``t − q − 1`` and the rest under
    decision ``t − q`` (:mod:`traces.replay.power`). Earliest first; none before step 0.
    """
    q = int(delay_s // step_s)
    r = delay_s - q * step_s
    out = ([t - q - 1] if r > 0 else []) + [t - q]
    return [d for d in out if d >= 0]


def explain(frame: pd.DataFrame, options: dict[str, Any], policy: str, params: dict[str, Any],
            ratio: float, *, seed: int = 0) -> dict[str, Any]:
    """Replay ``policy`` at ``ratio`` and say, for each breach step, what decided its caps.

    Returns the run's ``totals`` and ``breaches``: per breach step ``t`` the row's uncapped
    demand and its power after caps as fractions of the budget, and every decision that
    governed the step (:func:`governing`): its step, ``why`` and ``details`` (for ``bayes``
    the forecast's P(breach) uncapped and under its caps). A breach whose decisions all
    reported an uncapped risk under the target is a forecast that missed (too low a tail,
    the actuation delay); one under caps too few or too late is the rule's.
    """
    from policies import registry
    from policies.pipeline import forecaster_for
    from traces.replay.power import PowerScenario

    sc = PowerScenario(**{**options, "oversubscription": float(ratio)})
    data = sc.prepare(frame)
    pol = registry.create(policy, "power", **params)
    made: dict[int, tuple[str, dict[str, Any]]] = {}
    decide = pol.decide

    def record(spec: Any, obs: Any, forecast: Any, now: float, memory: Any = None) -> Any:
        dec = decide(spec, obs, forecast, now, memory)
        made[int(obs.t)] = (dec.why, dict(dec.details or {}))
        return dec

    pol.decide = record  # type: ignore[method-assign]
    res = sc.run(pol, data, seed=seed, forecaster=forecaster_for(pol, seed), timeline=True)
    delay = 0.0 if getattr(pol, "reads_future", False) else float(sc.config["delay_s"])
    budget = data.budget_w
    demand = data.demand_w.sum(axis=1)
    row = res.timeline["row_power_kw"].to_numpy() * 1000.0
    breaches = []
    for t in np.flatnonzero(res.extra["breach"]):
        breaches.append({
            "step": int(t), "demand": float(demand[t] / budget), "row": float(row[t] / budget),
            "decisions": [{"step": d, "why": made[d][0],
                           **{k: v for k, v in made[d][1].items()
                              if isinstance(v, int | float | str)}}
                          for d in governing(int(t), data.step_s, delay) if d in made],
        })
    return {"policy": policy, "ratio": float(ratio),
            "totals": {k: float(v) for k, v in res.totals.items()
                       if isinstance(v, int | float)},
            "breaches": breaches}


def uncapped_ratio(results: dict[str, dict[str, Any]]) -> tuple[float | None, float | None]:
    """Highest scanned ratio whose *uncapped* demand never exceeds the budget, and the next.

    ``demand_breach_steps`` depends on the ratio only, so every policy's points are pooled:
    what a row without any capping would sustain (0 breaches, 0 capped) — the bar a capping
    policy has to beat.
    """
    seen: dict[float, float] = {}
    for res in results.values():
        for p in res["points"]:
            seen[p["ratio"]] = p["totals"]["demand_breach_steps"]
    best = nxt = None
    for r in sorted(seen):
        if seen[r] > 0:
            nxt = r
            break
        best = r
    return best, nxt


def uncapped_steps(results: dict[str, dict[str, Any]], ratio: float) -> float:
    """Steps whose uncapped demand exceeds the budget at ``ratio`` (from any policy's points)."""
    return next(p["totals"]["demand_breach_steps"] for res in results.values()
                for p in res["points"] if p["ratio"] == ratio)


def _cells(r: float | None, tot: dict[str, float] | None) -> str:
    if tot is None:
        return "– | – | – | – | –"
    return (f"{r:.2f}× | {tot['servers']:.0f} | {tot['breach_steps']:.0f} | "
            f"{100 * tot['capped_fraction']:.2f} % | {100 * tot['performance_lost']:.3f} %")


def table(results: dict[str, dict[str, Any]], row: str) -> str:
    """Markdown: per policy the answer and the first failure above it."""
    lines = [
        "| row | policy | highest ratio | servers | breach steps | capped | performance lost "
        "| next step | servers | breach steps | capped | performance lost |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, res in results.items():
        best = _cells(res["ratio"], res["at"]) if res["ratio"] is not None else \
            "< first ratio | – | – | – | –"
        nxt = _cells(res["next_ratio"], res["next"]) if res["next"] is not None else \
            "none failed in the scan | – | – | – | –"
        extra = f" (passes again at {', '.join(f'{x:.2f}' for x in res['passes_above'])})" \
            if res["passes_above"] else ""
        lines.append(f"| {row} | {label}{extra} | {best} | {nxt} |")
    best_u, next_u = uncapped_ratio(results)
    lines.append(f"| {row} | no capping: uncapped demand never above budget | "
                 + (f"{best_u:.2f}× | | 0 | 0 | 0 | " if best_u is not None else "– | | | | | ")
                 + (f"{next_u:.2f}× | | {uncapped_steps(results, next_u):.0f} | 0 | 0 |"
                    if next_u is not None
                    else "none failed in the scan | | | | |"))
    return "\n".join(lines)


def _value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text, text)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--row", choices=["h100", "genai"], required=True)
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--policies", default="bayes,polca,oracle")
    ap.add_argument("--param", action="append", default=[],
                    help="policy parameter NAME.k=v (labelled in the table)")
    ap.add_argument("--option", action="append", default=[], help="scenario option k=v")
    ap.add_argument("--start", type=float, default=1.0)
    ap.add_argument("--stop", type=float, default=3.0)
    ap.add_argument("--step-ratio", type=float, default=0.05)
    ap.add_argument("--fine-step", type=float,
                    help="after the scan, rescan between its answer and first failure by this")
    ap.add_argument("--max-capped", type=float, default=0.01,
                    help="highest capped share of server-time that still passes")
    ap.add_argument("--patience", type=int, default=2,
                    help="stop a policy's scan after this many consecutive failures")
    ap.add_argument("--pods", type=int, default=32, help="genai row: pods (= GPUs) in it")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write every point as JSON here")
    ap.add_argument("--explain", type=float, metavar="RATIO",
                    help="no scan: replay each policy at RATIO and print, per breach step, "
                         "the decisions that governed it (their why)")
    a = ap.parse_args(argv)

    row = rows(a.data)[a.row]
    options = {**row.options,
               **{k: _value(v) for k, v in (kv.split("=", 1) for kv in a.option)}}
    params: dict[str, dict[str, Any]] = {}
    for kv in a.param:
        key, v = kv.split("=", 1)
        pol, k = key.split(".", 1)
        params.setdefault(pol, {})[k] = _value(v)
    t0 = time.time()
    frame = load_row(row, a.pods)
    print(f"row {a.row}: {frame['entity'].nunique()} series from {row.trace} "
          f"(step {row.step_s:g} s) in {time.time() - t0:.1f}s; options {options}", flush=True)
    if a.explain is not None:
        out = [explain(frame, options, name, params.get(name, {}), a.explain, seed=a.seed)
               for name in a.policies.split(",")]
        for ex in out:
            tot = ex["totals"]
            print(f"{ex['policy']} {ex['ratio']:.2f}x: breach steps {tot['breach_steps']:.0f}, "
                  f"capped {100 * tot['capped_fraction']:.2f} %, uncapped demand above "
                  f"budget in {tot['demand_breach_steps']:.0f} steps")
            for b in ex["breaches"]:
                print(f"  step {b['step']}: demand {b['demand']:.3f}, after caps "
                      f"{b['row']:.3f} of budget")
                for d in b["decisions"]:
                    print(f"    decided at step {d['step']}: {d['why']}")
        if a.out:
            a.out.parent.mkdir(parents=True, exist_ok=True)
            a.out.write_text(json.dumps(out, indent=1))
        return
    ratios = ratio_grid(a.start, a.stop, a.step_ratio)
    results: dict[str, dict[str, Any]] = {}
    for name in a.policies.split(","):
        p = params.get(name, {})
        label = name + (f" ({', '.join(f'{k}={v}' for k, v in p.items())})" if p else "")
        results[label] = scan_policy(frame, options, name, p, ratios,
                                     max_capped=a.max_capped, patience=a.patience,
                                     seed=a.seed, log=lambda s: print(s, flush=True),
                                     fine_step=a.fine_step)
    print()
    print(table(results, a.row))
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"row": a.row, "trace": str(row.trace), "options": options,
                                     "pods": a.pods if a.row == "genai" else None,
                                     "max_capped": a.max_capped, "ratios": ratios,
                                     "fine_step": a.fine_step, "patience": a.patience,
                                     "results": results}, indent=1, default=float))


if __name__ == "__main__":
    main()
