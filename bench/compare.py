"""Compare ``bayes`` against the peers at equal SLA, on a real trace.

Runs each policy family's sweep through the replay scenario (the same ``Scenario.run`` that
``tidewise replay`` drives), then reads every family's cost-versus-SLA curve at the same
SLA level by linear interpolation between sweep points, and prints one table.

Examples::

    .venv/bin/python bench/compare.py vm /work/shared/data/bitbrains-gwa-t-12-rnd/2013-7 \
        --policies bayes,hpa,kpa,oracle --at 0.01
    .venv/bin/python bench/compare.py serverless \
        /work/shared/data/azure-functions-2019-invitro-samples/1340 \
        --policies bayes,keepalive-10m,hybrid-histogram
    .venv/bin/python bench/compare.py power /work/shared/data/gpu-power-h100-training-wilkins \
        --policies bayes,polca

Options ``--option k=v`` go to the scenario; ``--param NAME.k=v`` to one policy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text in {"true", "false"}:
        return text == "true"
    if text == "none":
        return None
    return text


def pareto(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Non-dominated (sla, cost) points, sla ascending, cost strictly descending."""
    front: list[tuple[float, float]] = []
    for x, y in sorted(points):
        if not front or y < front[-1][1]:
            front.append((x, y))
    return front


def interpolate_cost(points: list[tuple[float, float]], sla: float) -> float | None:
    """Cost at ``sla`` along a family's Pareto curve, linear between sweep points.

    ``points`` are (sla, cost). An SLA better than every point cannot be read (None); one
    worse than every point costs as much as the cheapest point.
    """
    front = pareto(points)
    xs = np.array([p[0] for p in front])
    ys = np.array([p[1] for p in front])
    if sla < xs[0] - 1e-12:
        return None
    return float(np.interp(sla, xs, ys))


def interpolate_sla(points: list[tuple[float, float]], cost: float) -> float | None:
    """SLA miss at ``cost`` along a family's Pareto curve (the inverse reading).

    ``points`` are (sla, cost). A cost below every point's cannot be read (None); one above
    every point's gets the best point's SLA.
    """
    front = pareto(points)[::-1]  # cost ascending, sla descending
    cs = np.array([p[1] for p in front])
    ss = np.array([p[0] for p in front])
    if cost < cs[0] - 1e-9:
        return None
    return float(np.interp(cost, cs, ss))


def run_family(scen, data, name: str, scenario: str, params: dict, sweep: bool, seed: int):
    from policies import registry
    from policies.pipeline import forecaster_for

    cls = registry.get(name, scenario)
    grid = cls.sweep_grid if (sweep and cls.sweep_param) else (None,)
    rows = []
    for v in grid:
        p = dict(params)
        if v is not None:
            p[cls.sweep_param] = v
        pol = cls(**p)
        fc = forecaster_for(pol, seed)  # the replay's and the daemon's choice
        t0 = time.time()
        res = scen.run(pol, data, seed=seed, forecaster=fc)
        dt = time.time() - t0
        rows.append({"policy": name, "param": cls.sweep_param, "value": v, "secs": dt,
                     **res.totals})
        print(f"  {name} {cls.sweep_param}={v}: "
              + ", ".join(f"{k}={res.totals[k]:.6g}" for k in (scen.cost_figure, scen.sla_figure)
                          if k in res.totals)
              + f"  ({dt:.1f}s, decisions={res.totals.get('decisions', float('nan')):.0f})",
              flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("scenario", choices=["vm", "serverless", "power"])
    ap.add_argument("trace")
    ap.add_argument("--policies", default="bayes,hpa,kpa,oracle")
    ap.add_argument("--at", type=float, action="append", help="SLA level(s) to compare at")
    ap.add_argument("--at-cost", type=float, action="append", default=[],
                    help="cost level(s) to read each family's SLA at")
    ap.add_argument("--option", action="append", default=[], help="scenario option k=v")
    ap.add_argument("--param", action="append", default=[], help="policy param NAME.k=v")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--step", type=float, help="resample the trace to this step (seconds)")
    ap.add_argument("--out", help="write the rows as JSON here")
    ap.add_argument("--merge", action="append", default=[],
                    help="JSON rows of an earlier --out run to add (families not re-run)")
    ap.add_argument("--show", default="", help="comma-separated figures to list for every run")
    a = ap.parse_args(argv)

    import traces
    from traces.replay.base import get_scenario

    opts = dict(kv.split("=", 1) for kv in a.option)
    opts = {k: _value(v) for k, v in opts.items()}
    pparams: dict[str, dict] = {}
    for kv in a.param:
        key, v = kv.split("=", 1)
        pol, k = key.split(".", 1)
        pparams.setdefault(pol, {})[k] = _value(v)
    t0 = time.time()
    frame = traces.load(a.trace, step=a.step)
    scen = get_scenario(a.scenario)(**opts)
    data = scen.prepare(frame)
    print(f"loaded {a.trace} in {time.time() - t0:.1f}s; scenario {a.scenario} {opts}", flush=True)
    rows = []
    for name in a.policies.split(","):
        rows += run_family(scen, data, name, a.scenario, pparams.get(name, {}),
                           not a.no_sweep, a.seed)
    ran = {r["policy"] for r in rows}
    for path in a.merge:
        rows += [r for r in json.loads(Path(path).read_text()) if r["policy"] not in ran]
    if a.out:
        Path(a.out).write_text(json.dumps(rows, indent=1, default=str))
    if a.show:
        keys = a.show.split(",")
        print()
        print("| policy | knob | " + " | ".join(keys) + " |")
        print("|---|---|" + "---:|" * len(keys))
        for r in rows:
            knob = "default" if r["value"] is None else f"{r['param']}={r['value']}"
            cells = " | ".join(f"{r.get(k, float('nan')):.6g}" for k in keys)
            print(f"| {r['policy']} | {knob} | {cells} |")
    cost, sla = scen.cost_figure, scen.sla_figure
    levels = a.at or [0.01]
    fams = {}
    for r in rows:
        fams.setdefault(r["policy"], []).append((r[sla], r[cost]))
    print()
    print(f"| {sla} | " + " | ".join(f"{n} {cost}" for n in fams) + " | bayes vs each |")
    print("|---|" + "---|" * (len(fams) + 1))
    for lv in levels:
        vals = {n: interpolate_cost(p, lv) for n, p in fams.items()}
        b = vals.get("bayes")
        rel = []
        for n, v in vals.items():
            if n != "bayes" and b is not None and v:
                rel.append(f"{n}: {100 * (b / v - 1):+.1f}%")
        cells = " | ".join("n/a" if v is None else f"{v:.6g}" for v in vals.values())
        print(f"| {lv:g} | {cells} | {'; '.join(rel)} |")
    if a.at_cost:
        scale = rows[0].get("invocations") if a.scenario == "serverless" else None
        print()
        print(f"| {cost} | " + " | ".join(f"{n} {sla}" for n in fams) + " | bayes vs each |")
        print("|---|" + "---|" * (len(fams) + 1))
        for lv in a.at_cost:
            vals = {n: interpolate_sla(p, lv) for n, p in fams.items()}
            b = vals.get("bayes")
            rel = [f"{n}: {100 * (b / v - 1):+.1f}%" for n, v in vals.items()
                   if n != "bayes" and b is not None and v]

            def fmt(v):
                if v is None:
                    return "n/a"
                return f"{v:.6g}" + (f" ({v * scale:,.0f} cold starts)" if scale else "")

            print(f"| {lv:,.0f} | " + " | ".join(fmt(v) for v in vals.values())
                  + f" | {'; '.join(rel)} |")


if __name__ == "__main__":
    main()
