"""How far a better forecast of one vm series could take ``bayes``: a per-decision yardstick.

On the scored half of a trace (the same part, capacity and window as ``bench/forecasters.py``),
every decision at ``now`` (every ``sync_s``) needs ``ceil(peak / capacity)`` replicas, where
``peak`` is the demand's realised maximum over ``[now + boot_s, now + boot_s + sync_s]`` (what
a replica requested at ``now`` covers). A rule that instead requests ``ceil(q / capacity)``
for a forecast level ``q`` misses when that is fewer; sweeping ``q``'s quantile level gives a
curve of miss rate against mean replicas (relative to the mean need), read at 1 % (linear
interpolation). Rows:

* ``online``: ``q`` the quantile of the per-path window peak of the scenario's online
  forecaster (what ``bayes`` reads), fed the scored half as the replay feeds it;
* ``growth quantile, in-sample``: ``q = (last + c) * exp(Q(g)) - c`` with ``g`` the log growth
  from the last completed sample to the window peak (``c`` the log offset growth-bootstrap
  uses) and ``Q`` its empirical quantile **over the scored half itself**: it has seen the
  future it is scored on, so no forecast that draws one growth distribution for every
  decision does better;
* ``... by level decile`` / ``... by hour phase``: the same quantile taken per decile of the
  last level / per position in the hour (``3600 / step`` bins, fewer where a bin would hold
  under 200 decisions), in-sample too: what conditioning on the level or on the time within
  the hour (cron-like jobs) could buy at most, within the noise of a few hundred decisions
  per bin.

This ignores boot queues, the scale-down window and rate limits, so it does not predict
replica-seconds; it compares forecasts by how much headroom a 1 % miss rate costs them.

Example::

    .venv/bin/python bench/vm_tail_bound.py /work/shared/data/alibaba-cluster-trace-2018-sample
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVELS = np.concatenate([np.linspace(0.5, 0.99, 50), [0.995, 0.999, 1.0]])


def at_miss(miss: np.ndarray, cost: np.ndarray, rate: float) -> float | None:
    """Cost at ``rate`` misses on the (miss, cost) curve (None: no level that low)."""
    o = np.argsort(miss, kind="stable")
    m, c = miss[o], cost[o]
    return None if m[0] > rate else float(np.interp(rate, m, c))


def main(argv: list[str] | None = None) -> None:
    """Print the bound table for one trace."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--train-until", default="0.5")
    ap.add_argument("--boot-s", type=float, default=60.0)
    ap.add_argument("--sync-s", type=float, default=15.0)
    ap.add_argument("--rate", type=float, action="append", default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rates = args.rate or [0.01, 0.02]

    from policies.bayes_common import window_steps
    from policies.pipeline import default_forecaster
    from traces.replay.core import load_trace, make_scenario, split_frame

    frame = load_trace(args.trace, None, None)
    _, scored, _ = split_frame(frame, args.train_until)
    svc = make_scenario("vm", {}).prepare(scored).services[0]
    d, step, cap = np.asarray(svc.demand, dtype=np.float64), float(svc.step_s), svc.capacity
    boot, sync = args.boot_s, args.sync_s
    h = 1 + max(1, math.ceil((boot + sync) / step))
    per = max(1, round(step / sync))
    fc = default_forecaster("vm", args.seed)
    need, q_fc, last, win = [], [], [], []
    for t in range(2, len(d) - h - 1):
        origin = t * step
        x = fc(d[:t], origin, step, h).samples[:, :, 0]
        for j in range(per):
            now = origin + j * sync
            w = window_steps(origin, step, x.shape[1], now + boot, now + boot + sync)
            need.append(d[t + w.start:t + w.stop].max())
            q_fc.append(np.quantile(x[:, w].max(axis=1), LEVELS))
            last.append(d[t - 1])
            win.append((t - 1) * step % 3600.0)  # where in the hour the last sample began
    peak = np.asarray(need)
    n_need = np.ceil(peak / cap - 1e-9)
    c = 0.01 * max(float(np.abs(d).mean()), 1e-12)  # the log offset growth-bootstrap uses
    g = np.log(peak + c) - np.log(np.asarray(last) + c)
    base = np.log(np.asarray(last) + c)

    def curve(q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # q (N, L) demand levels
        n_q = np.ceil(q / cap - 1e-9)
        return (n_q < n_need[:, None]).mean(axis=0), n_q.mean(axis=0) / n_need.mean()

    def grouped(labels: np.ndarray) -> np.ndarray:
        q = np.empty((g.size, LEVELS.size))
        for k in np.unique(labels):
            sel = labels == k
            q[sel] = np.quantile(g[sel], LEVELS)[None, :]
        return np.exp(base[:, None] + q) - c

    lvl = np.asarray(last)
    decile = np.searchsorted(np.quantile(lvl, np.linspace(0.1, 0.9, 9)), lvl)
    # position in the hour, in as many bins as leave >= 200 decisions each (finer bins fit
    # noise: with a dozen decisions per bin the in-sample 99 % quantile is their maximum)
    n_bins = int(max(1, min(round(3600.0 / step), len(win) // 200)))
    phase = np.floor(np.asarray(win) / 3600.0 * n_bins).astype(np.int64)
    rows = {
        "online (the scenario's online forecaster)": curve(np.asarray(q_fc)),
        "growth quantile, in-sample": curve(np.exp(base[:, None]
                                                   + np.quantile(g, LEVELS)[None]) - c),
        "growth quantile by level decile, in-sample": curve(grouped(decile)),
        f"growth quantile by hour phase ({n_bins} bins), in-sample": curve(grouped(phase)),
    }
    print(f"trace {args.trace}: {len(peak)} decisions on the scored half, step {step:g} s, "
          f"capacity {cap:.4g}, mean need {n_need.mean():.3f} replicas\n")
    print("| forecast | " + " | ".join(f"mean replicas / need at {r:.1%} misses" for r in rates)
          + " |")
    print("|---|" + "---:|" * len(rates))
    for name, (miss, cost) in rows.items():
        cells = [at_miss(miss, cost, r) for r in rates]
        print(f"| {name} | " + " | ".join("n/a" if v is None else f"{v:.3f}" for v in cells)
              + " |")


if __name__ == "__main__":
    main()
