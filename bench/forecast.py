"""Training time per Fisher container and batched forecast time per entity.

Usage:
    nice -n 10 .venv/bin/python bench/forecast.py [--containers 1,2] [--models harmony,...]
        [--entities 1000] [--context 72]

With ``--floor`` it prints instead, per container, the MSE of an oracle that knows each
indicator's test-period mean (the smaller of the test variance and the last-value MSE,
per indicator), the CRPS of an oracle that knows each indicator's test-period distribution
(per indicator the smaller of two: the test values' own marginal distribution, or the last
value plus the test period's distribution of one-step changes; S = 100 samples read at
the levels (s + 0.5)/S, as the protocol's sample CRPS), and the largest |autocorrelation|
(lags 1..300) of the two-level blkio state sequences: references for what a 1-step
forecaster that is not told the test period can reach on these files.

Prints, per model and container, the wall-clock training time (HARMONY protocol split,
early stopping and calibration included) and the time of one batched forecast of
``--entities`` context windows (S = 100 samples each), as ms per entity.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DATA = Path("/work/shared/data/fisher-containers-2018")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--containers", default="1")
    ap.add_argument("--models", default="harmony,quantile-gbm,last,window-mean,seasonal-naive")
    ap.add_argument("--entities", type=int, default=1000)
    ap.add_argument("--context", type=int, default=72)
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--floor", action="store_true", help="print the oracle MSE floor instead")
    args = ap.parse_args()
    if args.floor:
        return floor(args)

    from models.base import get_estimator
    from models.data import make_windows
    from models.evaluate import load_dataset, split_dataset

    head = f"{'model':<16}{'container':<12}{'train s':>9}{'ms/entity':>11}"
    print(f"{head}  (batch of {args.entities})")
    for c in args.containers.split(","):
        ds = load_dataset(args.data / f"container{c}.csv")
        sp = split_dataset(ds, args.context, 1)
        x, _, t = make_windows(sp.test, args.context, 1)
        reps = int(np.ceil(args.entities / x.shape[0]))
        xb = np.concatenate([x] * reps)[: args.entities]
        tb = np.concatenate([t] * reps)[: args.entities]
        for name in args.models.split(","):
            est = get_estimator(name, context_length=args.context, prediction_length=1)
            t0 = time.perf_counter()
            pred = est.fit(sp.train, sp.validation)
            fit_s = time.perf_counter() - t0
            pred.predict_windows(xb[:8], tb[:8])  # warm-up
            t0 = time.perf_counter()
            outs = pred.predict_windows(xb, tb)
            ms = 1000 * (time.perf_counter() - t0) / len(outs)
            print(f"{name:<16}{'container' + c:<12}{fit_s:>9.1f}{ms:>11.2f}", flush=True)


def floor(args) -> None:
    from models.data import make_windows
    from models.evaluate import load_dataset, split_dataset
    from models.metrics import crps_samples

    print(f"{'container':<12}{'oracle MSE':>11}{'oracle CRPS':>12}{'blkio max|acf|':>16}")
    vals, crpss = [], []
    levels = (np.arange(100) + 0.5) / 100
    for c in args.containers.split(","):
        ds = load_dataset(args.data / f"container{c}.csv")
        sp = split_dataset(ds, args.context, 1)
        x, y, _ = make_windows(sp.test, args.context, 1)
        y, last = y[:, 0], x[:, -1]
        per = np.minimum(y.var(axis=0), ((y - last) ** 2).mean(axis=0))
        vals.append(per.mean())
        marginal = np.quantile(y, levels, axis=0)  # (S, M): the same draws for every step
        changes = np.quantile(y - last, levels, axis=0)
        told = crps_samples(np.broadcast_to(marginal, (len(y),) + marginal.shape), y)
        moved = crps_samples(last[:, None, :] + changes[None], y)
        crps = np.minimum(told.mean(axis=0), moved.mean(axis=0))
        crpss.append(crps.mean())
        acf = []
        raw = ds.series[0]
        for j, name in enumerate(raw.indicators):
            if "blkio" in name:
                v = raw.values[:, j]
                st = (v > (v.max() + v.min()) / 2).astype(float)
                st -= st.mean()
                acf += [abs(np.corrcoef(st[:-k], st[k:])[0, 1]) for k in range(1, 301)]
        print(f"{'container' + c:<12}{per.mean():>11.4f}{crps.mean():>12.4f}{max(acf):>16.3f}")
    print(f"{'mean':<12}{np.mean(vals):>11.4f}{np.mean(crpss):>12.4f}")


if __name__ == "__main__":
    main()
