"""Where the cost comes from: ``bayes`` fed by different forecasters, beside the peers.

On the scored part of a trace (after ``--train-until``), ``bayes`` is swept over its
``target_violation`` grid once per forecaster — its online one, trained models
(``quantile-gbm``, ``harmony``, ...) and ``truth`` (perfect foresight written as a Forecast) —
and ``hpa``, ``kpa`` and ``oracle`` run on the same part. Each family's Pareto curve is read at
the same violation rates (linear interpolation, as ``bench/compare.py`` does). Where ``bayes``
with ``truth`` is far from ``oracle``, the policy loses the difference; where ``bayes`` with
a model is far from ``bayes`` with ``truth``, the forecaster does.

Example::

    .venv/bin/python bench/forecasters.py /work/shared/data/bitbrains-gwa-t-12-rnd/2013-7 \
        --forecasters online,quantile-gbm,harmony,truth --at 0.005 --at 0.01 --at 0.02
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import interpolate_cost, pareto  # noqa: E402


def online_forecaster(seed: int, params: dict) -> object:
    """The ``online`` row's forecaster: the vm default, with ``params`` over its own."""
    from models.online import online_predictor
    from policies.forecasters import PredictorForecaster
    from policies.pipeline import DEFAULT_FORECASTERS

    model, base = DEFAULT_FORECASTERS["vm"]
    return PredictorForecaster(online_predictor(model, seed=seed, **{**base, **params}), seed,
                               model)


def main(argv: list[str] | None = None) -> None:
    """Print the table for one trace."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--forecasters", default="online,quantile-gbm,truth")
    ap.add_argument("--peers", default="hpa,kpa,oracle")
    ap.add_argument("--at", type=float, action="append", default=None)
    ap.add_argument("--train-until", default="0.5")
    ap.add_argument("--option", action="append", default=[], help="scenario key=value")
    ap.add_argument("--forecaster-param", action="append", default=[], help="model key=value")
    ap.add_argument("--online-param", action="append", default=[],
                    help="key=value for the scenario's online model (the `online` row): "
                         "overrides policies.pipeline.DEFAULT_FORECASTERS['vm']")
    ap.add_argument("--seed", type=int, default=0, help="seed of every run (forecaster sampling)")
    ap.add_argument("--points", action="store_true",
                    help="also print every sweep point (knob, violation rate, replica-seconds)")
    args = ap.parse_args(argv)
    at = args.at or [0.005, 0.01, 0.02]

    from traces.replay.core import load_trace, parse_options, run_replay, split_frame

    options = parse_options(args.option)
    frame = load_trace(args.trace, None, None)
    _, scored, spans = split_frame(frame, args.train_until)
    curves: dict[str, list[tuple[float, float]]] = {}
    notes: dict[str, str] = {}
    for name in args.forecasters.split(","):
        t0 = time.perf_counter()
        if name == "online":
            rep = run_replay(scored, "vm", ["bayes"], sweep=True, options=options,
                             seed=args.seed, forecaster=online_forecaster(
                                 args.seed, parse_options(args.online_param)))
        else:
            rep = run_replay(frame, "vm", ["bayes"], sweep=True, options=options, model=name,
                             seed=args.seed,
                             train_until=args.train_until,
                             model_params=parse_options(args.forecaster_param))
            sc = rep["config"]["model"].get("scored")
            if sc:
                notes[name] = (f"forecast CRPS {sc['crps']:.4g}, MSE {sc['mse']:.4g}, "
                               f"coverage_90 {sc['coverage_90']:.3f}, upper-99 coverage "
                               f"{sc['coverage_upper_99']:.3f}")
        curves[f"bayes ({name})"] = [(r["totals"]["violation_rate"],
                                      r["totals"]["replica_seconds"])
                                     for r in rep["policies"]["bayes"]]
        if args.points:
            notes[f"{name} sweep"] = ", ".join(
                f"{r['params'].get('target_violation')}: {r['totals']['violation_rate']:.4f} / "
                f"{r['totals']['replica_seconds'] / 1e6:.4f} M" for r in rep["policies"]["bayes"])
        print(f"# bayes ({name}): {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    peers = [p for p in args.peers.split(",") if p]
    # policy-specific options (`bayes.x=...`) are for the bayes runs; the peers get the rest
    peer_options = {k: v for k, v in options.items()
                    if "." not in k or k.split(".", 1)[0] in peers}
    rep = (run_replay(scored, "vm", peers, sweep=True, options=peer_options) if peers
           else {"policies": {}})
    for p in peers:
        curves[p] = [(r["totals"]["violation_rate"], r["totals"]["replica_seconds"])
                     for r in rep["policies"][p]]
    print(f"trace {args.trace}; scored part {spans['scored_span'][0]:.0f}.."
          f"{spans['scored_span'][1]:.0f} (trained before it); replica-seconds (M) at equal "
          "violation rate (n/a: no sweep point that low)\n")
    print("| violation rate | " + " | ".join(curves) + " |")
    print("|---|" + "---:|" * len(curves))
    for sla in at:
        cells = []
        for pts in curves.values():
            cost = interpolate_cost(pareto(pts), sla)
            cells.append("n/a" if cost is None else f"{cost / 1e6:.4f}")
        print(f"| {sla:.1%} | " + " | ".join(cells) + " |")
    for name, note in notes.items():
        print(f"\n{name}: {note}")


if __name__ == "__main__":
    main()
