"""CPU of turning a period's forecasts into stored rows: one forecast at a time, or batched.

    .venv/bin/python bench/stored_forms.py [--entities 3200] [--metrics 5] [--repeat 5]

The forecast refresh stores, for every series, the JSON payload (times, mean, seven
quantile columns, ...) and the binary sample paths of its indicator of a joint Forecast.
This builds ``--entities`` joint Forecasts of ``--metrics`` indicators (100 paths x 20
steps, as the daemon's refresh makes them) and times, alternated over ``--repeat`` rounds,
this process's CPU of:

* ``one at a time``: :func:`service.forecasting.payload` and ``stored_samples`` per
  (forecast, indicator), as the refresh did before :func:`stored_forms`;
* ``batched``: :func:`service.forecasting.stored_forms` over all of them (what it does now);

each followed by the JSON encoding ``save_forecasts`` applies to the payload (orjson), so
the figure is the whole client-side cost of a row before the database. It checks that both
give the same JSON and bytes, and prints microseconds per series (medians) and the ratio.
Figures depend on the machine and its load (printed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str] | None = None) -> None:
    import orjson

    from models.forecast import Forecast
    from service import forecasting
    from service.store.forecasts import _plain

    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--entities", type=int, default=3200)
    ap.add_argument("--metrics", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    if args.entities < 1 or args.metrics < 1 or args.repeat < 1:
        ap.error("--entities, --metrics and --repeat must be at least 1")

    rng = np.random.default_rng(0)
    names = tuple(f"m{j}" for j in range(args.metrics))
    level = rng.uniform(1, 50, size=(args.entities, 1, 1, args.metrics))
    walks = level + np.cumsum(rng.normal(0, 0.5, size=(args.entities, 100, 20, args.metrics)),
                              axis=2)
    fcs = [Forecast(w, 1.8e9, 15.0, names, model="window-mean", info={"kind": "bench"})
           for w in walks]
    series = args.entities * args.metrics

    def dump(body: dict) -> bytes:
        return orjson.dumps(body, default=_plain, option=orjson.OPT_SERIALIZE_NUMPY)

    def one_at_a_time() -> list[bytes]:
        return [dump(forecasting.payload(fc, j, names)) + forecasting.stored_samples(fc, j)
                for fc in fcs for j in range(args.metrics)]

    def batched() -> list[bytes]:
        return [dump(body) + blob for forms in forecasting.stored_forms(
            [(fc, names) for fc in fcs]) for body, blob in forms]

    def fresh() -> None:  # no quantiles kept on a Forecast from the last round
        for fc in fcs:
            fc.__dict__.pop("_stored_quantiles", None)
            fc.__dict__.pop("mean", None)

    fresh()
    if one_at_a_time() != batched():
        raise SystemExit("the two ways gave different rows")
    print(f"load before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {series:,} series "
          f"({args.entities:,} forecasts of {args.metrics} indicators, 100 x 20 paths)")
    times: dict[str, list[float]] = {"one at a time": [], "batched": []}
    for _ in range(args.repeat):
        for name, fn in (("one at a time", one_at_a_time), ("batched", batched)):
            fresh()
            c0 = time.process_time()
            fn()
            times[name].append((time.process_time() - c0) / series * 1e6)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("| way | CPU per series (µs), median | rounds |")
    print("|---|---:|---|")
    for k, v in times.items():
        print(f"| {k} | {med[k]:.1f} | {', '.join(f'{x:.1f}' for x in v)} |")
    print(f"batched / one at a time: {med['batched'] / med['one at a time']:.2f}; "
          f"load after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
