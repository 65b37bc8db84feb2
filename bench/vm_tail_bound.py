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

With ``--learned`` two out-of-sample rows follow, both from one learner (scikit-learn's
histogram gradient boosting on the log growth, trained on the first half, its residual
quantiles taken on the last quarter of that half, held out of the fit), so they differ only
in what they see: ``learned, aggregate lags`` the last 12 samples of the aggregate, the
decision's position in the step and the sample's time of day; ``learned, + per-entity lags``
the same and, per entity of the trace, its share of the aggregate and its last change
(relative to the aggregate). The difference between the two is what per-entity series can
add to a forecast of the aggregate's tail.

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
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEVELS = np.concatenate([np.linspace(0.5, 0.99, 50), [0.995, 0.999, 1.0]])


def at_miss(miss: np.ndarray, cost: np.ndarray, rate: float) -> float | None:
    """Cost at ``rate`` misses on the (miss, cost) curve (None: no level that low)."""
    o = np.argsort(miss, kind="stable")
    m, c = miss[o], cost[o]
    return None if m[0] > rate else float(np.interp(rate, m, c))


def _matrix(frame: Any, step: float, names: list[str]) -> np.ndarray:  # noqa: ANN401
    """The demand metric's (T, E) matrix of a part of the trace, entities ``names``.

    Binned and held as the vm scenario bins them (``traces.replay.vm._grid``): each entity
    its bucket means, held over gaps inside its span, 0 outside it.
    """
    from traces.replay.core import make_scenario
    from traces.replay.vm import _grid

    rows, _, _ = make_scenario("vm", {})._demand_rows(frame)
    ts = rows["ts"].to_numpy(dtype=np.float64)
    code = {n: i for i, n in enumerate(names)}
    codes = rows["entity"].astype(str).map(code).to_numpy(dtype=np.int64)
    t0 = float(ts.min())
    n = int(np.floor((ts.max() - t0) / step + 1e-9)) + 1
    mat, _ = _grid(ts, rows["value"].to_numpy(dtype=np.float64), codes, len(names), t0, step, n)
    return np.nan_to_num(mat.T, nan=0.0)  # an entity with no sample in this part: 0


def _examples(m: np.ndarray, step: float, boot: float, sync: float, t0: float,
              per_entity: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features, log growth target, base log level and need of every decision of ``m``."""
    from policies.bayes_common import window_steps

    d = m.sum(axis=1)
    c = 0.01 * max(float(np.abs(d).mean()), 1e-12)
    h = 1 + max(1, math.ceil((boot + sync) / step))
    per = max(1, round(step / sync))
    lags = 12
    feats, target, base, need = [], [], [], []
    for t in range(lags, len(d) - h - 1):
        origin = t * step
        hist = np.log(d[t - lags:t] + c) - np.log(d[t - 1] + c)  # (lags,)
        tod = ((t0 + (t - 1) * step) % 86400.0) / 86400.0
        extra = np.empty(0)
        if per_entity:
            share = m[t - 1] / max(d[t - 1], 1e-12)
            change = (m[t - 1] - m[t - 2]) / max(d[t - 1], 1e-12)
            extra = np.concatenate([share, change])
        for j in range(per):
            now = origin + j * sync
            w = window_steps(origin, step, h, now + boot, now + boot + sync)
            peak = d[t + w.start:t + w.stop].max()
            feats.append(np.concatenate([hist, [j / per, np.sin(2 * np.pi * tod),
                                                np.cos(2 * np.pi * tod)], extra]))
            target.append(np.log(peak + c) - np.log(d[t - 1] + c))
            base.append(np.log(d[t - 1] + c))
            need.append(peak)
    return np.asarray(feats), np.asarray(target), np.asarray(base), np.asarray(need)


def learned_levels(train: Any, scored: Any, svc: Any, args: Any,  # noqa: ANN401
                   per_entity: bool) -> tuple[np.ndarray, np.ndarray]:
    """Demand levels (N, len(LEVELS)) of the learned growth model on the scored decisions.

    Also the decisions' needs: these decisions start 12 samples into the scored half (the
    lags), the main loop's 2, so the rows hold 10 samples' decisions fewer.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    step = float(svc.step_s)
    names = sorted(set(train["entity"].astype(str)) | set(scored["entity"].astype(str)))
    m_tr, m_sc = _matrix(train, step, names), _matrix(scored, step, names)
    agg = m_sc.sum(axis=1)
    k = min(len(agg), len(svc.demand))
    top = max(float(np.abs(svc.demand).max()), 1e-12)
    off = float(np.abs(agg[:k] - svc.demand[:k]).max() / top)
    print(f"learned rows: {len(names)} entities; their sum differs from the scenario's demand "
          f"by at most {off:.2e} of its peak ({len(agg)} against {len(svc.demand)} samples)")
    t0_tr = float(train["ts"].min())
    t0_sc = float(scored["ts"].min())
    x, y, _, _ = _examples(m_tr, step, args.boot_s, args.sync_s, t0_tr, per_entity)
    cut = int(len(y) * 0.5)  # fit on the first quarter of the trace, residuals on the second
    model = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05,
                                          random_state=args.seed)
    model.fit(x[:cut], y[:cut])
    resid = y[cut:] - model.predict(x[cut:])
    xs, _, base, need = _examples(m_sc, step, args.boot_s, args.sync_s, t0_sc, per_entity)
    pred = model.predict(xs)
    q = np.exp(base[:, None] + pred[:, None] + np.quantile(resid, LEVELS)[None]) - (
        0.01 * max(float(np.abs(m_sc.sum(axis=1)).mean()), 1e-12))
    return q, need


def main(argv: list[str] | None = None) -> None:
    """Print the bound table for one trace."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("trace")
    ap.add_argument("--train-until", default="0.5")
    ap.add_argument("--boot-s", type=float, default=60.0)
    ap.add_argument("--sync-s", type=float, default=15.0)
    ap.add_argument("--rate", type=float, action="append", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--learned", action="store_true",
                    help="add the two out-of-sample learned rows (aggregate; + per-entity)")
    args = ap.parse_args(argv)
    rates = args.rate or [0.01, 0.02]

    from policies.bayes_common import window_steps
    from policies.pipeline import default_forecaster
    from traces.replay.core import load_trace, make_scenario, split_frame

    frame = load_trace(args.trace, None, None)
    train, scored, _ = split_frame(frame, args.train_until)
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
    if args.learned:
        for name, per_entity in (("learned, aggregate lags", False),
                                 ("learned, + per-entity lags", True)):
            q, need_l = learned_levels(train, scored, svc, args, per_entity)
            n_l = np.ceil(need_l / cap - 1e-9)
            n_q = np.ceil(q / cap - 1e-9)
            rows[f"{name} (out-of-sample)"] = ((n_q < n_l[:, None]).mean(axis=0),
                                               n_q.mean(axis=0) / n_l.mean())
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
