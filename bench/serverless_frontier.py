"""The serverless frontier: cold starts against idle warm memory, ``bayes`` and its peers.

Runs, through the same ``Scenario.run`` that ``tidewise replay`` drives: ``bayes`` over its
sweep of ``cold_start_gb_s``, a fixed keep-alive of every whole minute from 1 to 60, and
``hybrid-histogram`` over its sweep; prints the frontier table and checks issue 11's target:

* at ``keepalive-10m``'s idle memory, ``bayes`` (read on its Pareto curve, linear between
  sweep points as in ``bench/compare.py``) has at least 45 % fewer cold starts;
* at every idle-memory level of ``bayes``'s sweep, no fixed keep-alive of 1–60 minutes and
  no ``hybrid-histogram`` setting has fewer cold starts: no peer run uses at most that much
  idle memory with fewer cold starts (*dominance*), and neither peer family's Pareto curve,
  read at that memory, is below ``bayes`` (*interpolated*).

Example::

    .venv/bin/python bench/serverless_frontier.py \\
        ../shared/data/azure-functions-2019-invitro-samples/1340 --out frontier-1340.json

``--merge FILE`` reuses the rows of an earlier ``--out`` (families in it are not re-run).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import _value, interpolate_sla  # noqa: E402

SHOWN_KEEPALIVE = (1, 5, 10, 20, 30, 45, 60)


def run_rows(scen, data, family: str, values, param: str | None, seed: int,
             params: dict | None = None, fparams: dict | None = None) -> list[dict]:
    """Run ``family`` once per value of ``param`` (``None``: its defaults); one row each.

    ``fparams`` change the parameters of the forecaster a ``bayes`` run is fed.
    """
    from serverless_where import bayes_forecaster

    from policies import registry
    from policies.pipeline import forecaster_for

    name = "keepalive-10m" if family == "keepalive" else family
    cls = registry.get(name, "serverless")
    rows = []
    for v in values:
        p = dict(params or {})
        if v is not None:
            p[param] = v
        pol = cls(**p)
        t0 = time.time()
        fc = bayes_forecaster(seed, fparams) if fparams else forecaster_for(pol, seed)
        res = scen.run(pol, data, seed=seed, forecaster=fc)
        rows.append({"policy": family, "param": param, "value": v,
                     "secs": time.time() - t0, **res.totals})
        print(f"  {family} {param}={v}: idle {res.totals['wasted_memory_gb_s']:,.0f} GB·s, "
              f"{res.totals['cold_starts']:,.0f} cold starts ({time.time() - t0:.1f}s)",
              flush=True)
    return rows


def check(rows: list[dict], reduction: float = 0.45) -> dict:
    """Issue 11's serverless target on the rows of one trace (see the module doc)."""
    fam: dict[str, list[dict]] = {}
    for r in rows:
        fam.setdefault(r["policy"], []).append(r)
    inv = rows[0]["invocations"]

    def curve(name):
        return [(r["cold_start_rate"], r["wasted_memory_gb_s"]) for r in fam[name]]

    ka10 = next(r for r in fam["keepalive"] if r["value"] == 10)
    at10 = interpolate_sla(curve("bayes"), ka10["wasted_memory_gb_s"])
    out = {"keepalive_10m": {"idle_gb_s": ka10["wasted_memory_gb_s"],
                             "cold_starts": ka10["cold_starts"],
                             "bayes_cold_starts": None if at10 is None else at10 * inv}}
    out["keepalive_10m"]["reduction"] = (
        None if at10 is None else 1 - at10 * inv / ka10["cold_starts"])
    out["keepalive_10m"]["met"] = bool(at10 is not None
                                       and out["keepalive_10m"]["reduction"] >= reduction)
    points = []
    for b in sorted(fam["bayes"], key=lambda r: r["wasted_memory_gb_s"]):
        mem, cs = b["wasted_memory_gb_s"], b["cold_starts"]
        row = {"value": b["value"], "idle_gb_s": mem, "cold_starts": cs}
        for peer in ("keepalive", "hybrid-histogram"):
            beat = [r for r in fam.get(peer, [])
                    if r["wasted_memory_gb_s"] <= mem and r["cold_starts"] < cs]
            row[f"{peer}_dominates"] = [r["value"] for r in beat]
            s = interpolate_sla(curve(peer), mem) if peer in fam else None
            row[f"{peer}_at_memory"] = None if s is None else s * inv
        row["met"] = not row["keepalive_dominates"] and not row["hybrid-histogram_dominates"] \
            and all(row[f"{p}_at_memory"] is None or row[f"{p}_at_memory"] >= cs - 1e-6
                    for p in ("keepalive", "hybrid-histogram"))
        points.append(row)
    out["points"] = points
    out["every_point_met"] = all(p["met"] for p in points)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("trace")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the rows and the check as JSON here")
    ap.add_argument("--merge", action="append", default=[],
                    help="rows of an earlier --out to reuse (those families are not re-run)")
    ap.add_argument("--param", action="append", default=[],
                    help="bayes parameter k=v (cold_start_gb_s is swept)")
    ap.add_argument("--bayes-values", help="comma-separated cold_start_gb_s values to run "
                    "(default: the sweep grid, or none when --merge holds bayes rows)")
    ap.add_argument("--forecaster-param", action="append", default=[],
                    help="parameter k=v of bayes's forecaster (intermittent-count), e.g. "
                         "hazard_calibration=false for the forecaster before calibration")
    a = ap.parse_args(argv)

    import traces
    from policies import registry
    from traces.replay.base import get_scenario

    scen = get_scenario("serverless")()
    data = scen.prepare(traces.load(a.trace))
    print(f"{a.trace}: {len(data.entities)} functions, {data.concurrency.shape[0]} steps of "
          f"{data.step_s:g} s, {int(data.invocations.sum()):,} invocations", flush=True)
    rows: list[dict] = []
    for path in a.merge:
        rows += json.loads(Path(path).read_text())["rows"]
    have = {r["policy"] for r in rows}
    if "keepalive" not in have:
        rows += run_rows(scen, data, "keepalive", range(1, 61), "keepalive_min", a.seed)
    if "hybrid-histogram" not in have:
        hh = registry.get("hybrid-histogram", "serverless")
        rows += run_rows(scen, data, "hybrid-histogram", hh.sweep_grid, hh.sweep_param, a.seed)
    b = registry.get("bayes", "serverless")
    values = b.sweep_grid if "bayes" not in have else ()
    if a.bayes_values:  # only these (added to merged rows, or instead of the whole sweep)
        values = tuple(float(v) for v in a.bayes_values.split(","))
    if values:
        params = {k: _value(v) for k, v in (kv.split("=", 1) for kv in a.param)}
        fparams = {k: _value(v) for k, v in (kv.split("=", 1) for kv in a.forecaster_param)}
        rows += run_rows(scen, data, "bayes", values, b.sweep_param, a.seed, params, fparams)
    result = check(rows)
    if a.out:
        Path(a.out).write_text(json.dumps({"trace": a.trace, "rows": rows, "check": result},
                                          indent=1, default=str))

    print("\n| policy | setting | idle warm memory (GB·s) | cold starts | cold-start rate |")
    print("|---|---|---:|---:|---:|")
    order = {"keepalive": 0, "hybrid-histogram": 1, "bayes": 2}
    for r in sorted(rows, key=lambda r: (order.get(r["policy"], 3), r["value"] or 0)):
        if r["policy"] == "keepalive" and r["value"] not in SHOWN_KEEPALIVE:
            continue
        print(f"| {r['policy']} | {r['param']}={r['value']:g} | {r['wasted_memory_gb_s']:,.0f} "
              f"| {r['cold_starts']:,.0f} | {100 * r['cold_start_rate']:.3f} % |")
    k = result["keepalive_10m"]
    red = "n/a" if k["reduction"] is None else f"{100 * k['reduction']:.1f} %"
    bcs = "n/a" if k["bayes_cold_starts"] is None else f"{k['bayes_cold_starts']:,.0f}"
    print(f"\nat keepalive-10m's idle memory ({k['idle_gb_s']:,.0f} GB·s): bayes {bcs} cold "
          f"starts against {k['cold_starts']:,.0f}: {red} fewer -> "
          f"{'met' if k['met'] else 'MISSED'} (target 45 %)")
    print("\n| bayes cold_start_gb_s | idle GB·s | bayes cold starts | keep-alive 1–60 min at "
          "that memory | hybrid at that memory | peer runs with less memory and fewer cold "
          "starts | met |")
    print("|---:|---:|---:|---:|---:|---|---|")
    for p in result["points"]:
        dom = ", ".join([f"keep-alive {v} min" for v in p["keepalive_dominates"]]
                        + [f"hybrid {v}" for v in p["hybrid-histogram_dominates"]]) or "none"

        def fmt(v):
            return "n/a (less than any run)" if v is None else f"{v:,.0f}"

        print(f"| {p['value']:g} | {p['idle_gb_s']:,.0f} | {p['cold_starts']:,.0f} | "
              f"{fmt(p['keepalive_at_memory'])} | {fmt(p['hybrid-histogram_at_memory'])} | "
              f"{dom} | {'yes' if p['met'] else 'NO'} |")
    print(f"\nevery sweep point: {'met' if result['every_point_met'] else 'MISSED'}")


if __name__ == "__main__":
    main()
