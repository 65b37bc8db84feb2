"""A/B of ``harmony`` settings on Fisher containers, scored as ``tidewise evaluate`` scores.

Usage:
    OMP_NUM_THREADS=1 nice -n 10 .venv/bin/python bench/ablation.py --containers 4,5 \
        --variant '{"members": 1}' --variant '{"members": 1, "crps_weight": 20}'

Each ``--variant`` is a JSON object of ``harmony`` parameters over its defaults. For each
variant and container it fits on the HARMONY protocol's train split (early stopping and
calibration on the validation split), forecasts every test position one step ahead
(S = 100, seed 0) and prints MSE, CRPS and 90% coverage averaged over indicators
(``models.metrics.evaluate_samples``, the function behind ``report.json``), then the mean
over the containers. Training is deterministic for a given seed on one thread, so a rerun
prints the same figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path("/work/shared/data/fisher-containers-2018")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--containers", default="4,5")
    ap.add_argument("--variant", action="append", default=[], help="JSON harmony params")
    ap.add_argument("--context", type=int, default=72)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()

    from models.base import get_estimator
    from models.data import make_windows
    from models.evaluate import load_dataset, split_dataset
    from models.metrics import evaluate_samples

    variants = [json.loads(v) for v in args.variant] or [{}]
    splits = {}
    for c in args.containers.split(","):
        splits[c] = split_dataset(load_dataset(args.data / f"container{c}.csv"), args.context, 1)
    print(f"{'variant':<44}{'container':<12}{'MSE':>8}{'CRPS':>8}{'cov90':>7}{'fit s':>7}")
    for params in variants:
        label = json.dumps(params, separators=(",", ":"))[:43]
        rows = []
        for c, sp in splits.items():
            est = get_estimator(
                "harmony",
                context_length=args.context,
                prediction_length=1,
                num_samples=100,
                seed=args.seed,
                **params,
            )
            t0 = time.perf_counter()
            pred = est.fit(sp.train, sp.validation)
            fit_s = time.perf_counter() - t0
            x, y, t = make_windows(sp.test, args.context, 1)
            samples = np.stack([o.samples for o in pred.predict_windows(x, t)])
            avg = evaluate_samples(samples, y, sp.indicators)["average"]
            rows.append((avg["mse"], avg["crps"], avg["coverage_90"]))
            print(
                f"{label:<44}{'container' + c:<12}{avg['mse']:>8.4f}{avg['crps']:>8.4f}"
                f"{avg['coverage_90']:>7.3f}{fit_s:>7.0f}",
                flush=True,
            )
        mse, crps, cov = np.mean(rows, axis=0)
        print(f"{label:<44}{'mean':<12}{mse:>8.4f}{crps:>8.4f}{cov:>7.3f}", flush=True)


if __name__ == "__main__":
    main()
