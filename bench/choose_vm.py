"""Which forecaster the daemon's ``choose`` job would pick for a vm trace, and why.

At the start of a trace's scored half (after ``--train-until``) the daemon's history is the
part before it. The ``choose`` job (:mod:`service.choosing`) splits a target's history in
halves, trains every candidate that needs training on the first, replays ``bayes`` fed by each
over the second at the target's knob (``target_violation``, 0.01 by default) and keeps, with
:func:`service.choosing.pick`, the one with the fewest replica-seconds within the SLA (else
the lowest violation rate). This runs that backtest on the part before the scored half, with
the scored half's capacity (so the replicas are the ones the scored half is judged in), and
also sweeps each candidate to read its curve at the SLA as ``bench/forecasters.py`` does.

Example::

    .venv/bin/python bench/choose_vm.py /work/shared/data/alibaba-cluster-trace-2018-sample \
        --candidates online,quantile-gbm
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import interpolate_cost, pareto  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    """Print each candidate's backtest and the pick for one trace."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--candidates", default="online,quantile-gbm")
    ap.add_argument("--train-until", default="0.5")
    ap.add_argument("--sla", type=float, default=0.01, help="the target's target_violation")
    args = ap.parse_args(argv)

    from service.choosing import ONLINE, Trial, pick
    from traces.replay.core import load_trace, make_scenario, run_replay, split_frame

    frame = load_trace(args.trace, None, None)
    history, scored, _ = split_frame(frame, args.train_until)
    cap = make_scenario("vm", {}).prepare(scored).services[0].capacity
    opts = {"capacity": cap}
    _, second, _ = split_frame(history, 0.5)
    trials, curves = [], {}
    for name in [c.strip() for c in args.candidates.split(",") if c.strip()]:
        t0 = time.perf_counter()
        if name == ONLINE:
            rep = run_replay(second, "vm", ["bayes"], sweep=True, options=dict(opts), plots=False)
        else:
            rep = run_replay(history, "vm", ["bayes"], sweep=True, options=dict(opts),
                             plots=False, model=name, train_until=0.5)
        runs = rep["policies"]["bayes"]
        at_knob = [r for r in runs
                   if abs(float(r["params"]["target_violation"]) - args.sla) < 1e-12]
        if not at_knob:
            raise SystemExit(f"--sla {args.sla} is not a point of bayes's sweep grid")
        one = at_knob[0]["totals"]
        trials.append(Trial(name, float(one["violation_rate"]), float(one["replica_seconds"])))
        pts = [(r["totals"]["violation_rate"], r["totals"]["replica_seconds"]) for r in runs]
        curves[name] = interpolate_cost(pareto(pts), args.sla)
        c = curves[name]
        print(f"{name}: at knob {args.sla:g}: {one['violation_rate']:.4f} / "
              f"{one['replica_seconds'] / 1e6:.4f} M; curve at {args.sla:.1%}: "
              f"{'n/a' if c is None else f'{c / 1e6:.4f} M'}; sweep "
              + ", ".join(f"{v:.4f}/{r / 1e6:.4f}" for v, r in pts)
              + f" [{time.perf_counter() - t0:.0f} s]", flush=True)
    best = pick(trials, args.sla)
    ok = {k: v for k, v in curves.items() if v is not None}
    print(f"pick (service.choosing.pick): {best.name if best else 'none'}; cheapest curve at "
          f"{args.sla:.1%}: {min(ok, key=ok.get) if ok else 'none'}")


if __name__ == "__main__":
    main()
