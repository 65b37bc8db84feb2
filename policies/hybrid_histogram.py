"""Hybrid histogram keep-alive / pre-warm policy of "Serverless in the Wild".

Shahrad et al., USENIX ATC'20, §4.2, applied to the serverless reference model.

What the paper does (per application; here per function, since in the 670-function sample
every function is its own app):

* It keeps a **range-limited histogram of idle times** (time from one invocation to the next)
  with 1-minute bins over a 4-hour range (``range_min`` = 240, ``bin_min`` = 1); idle times
  beyond the range are counted as out-of-bounds (OOB).
* **Histogram mode**: pre-warm window = the ``head_percentile`` (5th) idle time reduced by
  ``margin`` (10 %); keep-alive window ends at the ``tail_percentile`` (99th) idle time
  increased by ``margin``. Percentiles use bin edges: the head is the lower edge of the bin
  holding the 5th percentile, the tail the upper edge of the bin holding the 99th.
* **Not representative** — fewer than ``min_idle_times`` idle times, or a coefficient of
  variation of the bin counts (population std / mean over all bins) below
  ``cv_threshold`` (2): fall back to a plain keep-alive with no pre-warming and the
  histogram range (4 h) as keep-alive — the paper's conservative fallback.
* **Too many OOB idle times** (share ≥ ``oob_threshold``, 0.5): forecast the next idle time
  with a time-series model (the paper uses ARIMA). We use an AR(1) fitted by least squares
  on the last ``ar_window`` (32) idle times (the last idle time itself when fewer than 3),
  and keep the instance warm from ``(1 − forecast_margin)`` to ``(1 + forecast_margin)``
  times the forecast (``forecast_margin`` = 15 %: pre-warm window = forecast − 15 %,
  keep-alive window = 2 × 15 % of the forecast).

Percentiles, margins (10 % / 15 %), bin size, range, the CV threshold and the fallback are
the paper's as we understand them; we cross-checked them against two public
re-implementations (dslab's and OpenDC's), not against the paper's text, which we could not
open here. ``min_idle_times`` (5) and ``oob_threshold`` (0.5) are our defaults.

Translation to the minute model (``traces.replay.serverless``)
-------------------------------------------------------------
Idle times are observed at step resolution: when a function is busy in step ``a`` and next
busy in step ``b``, its idle time is ``b − a − 1`` whole steps (0 for consecutive steps),
converted to minutes; each busy step adds one idle time. The windows become whole steps:
an instance idle for ``e`` steps since its last busy step is warm iff
``pre ≤ e < ka`` with ``pre = ceil(pre-warm window)`` and ``ka = ceil(keep-alive end)``.
Instance ``k`` of a function was last busy in the latest step with ``c ≥ k``, so

    w_t = max(c over the last ka steps) − max(c over the last pre steps)

(the instances last busy between ``ka`` and ``pre`` steps ago). With ``pre = 0`` and
``ka = K`` this is exactly the fixed keep-alive of K minutes. The windows are recomputed
every time a function is busy, from its histogram as it stands then.

Knobs (``defaults``); ``--sweep`` walks ``tail_percentile`` over 90, 95, 99, 99.9.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from policies.base import Decision, Policy
from policies.registry import register
from policies.scenarios.serverless import Observation, Spec

MODE_NONE, MODE_FALLBACK, MODE_HISTOGRAM, MODE_FORECAST = 0, 1, 2, 3
MODE_NAMES = {MODE_NONE: "no-data", MODE_FALLBACK: "fallback-keepalive",
              MODE_HISTOGRAM: "histogram", MODE_FORECAST: "ar-forecast"}


def _ceil(x: np.ndarray) -> np.ndarray:
    # windows like 0.9·10 = 9.000000000000002 must give 9, not 10
    return np.ceil(np.asarray(x, dtype=np.float64) - 1e-9).astype(np.int64)


def ar1_forecast(x: np.ndarray) -> np.ndarray:
    """One-step AR(1) forecast per row of ``x`` (NaN = missing, oldest first).

    Least-squares AR(1) around the row mean: ``x̂ = μ + φ (x_last − μ)``, ``φ`` clipped to
    [−0.95, 0.95]. Rows with fewer than 3 values (or no spread) forecast their last value /
    their mean. Forecasts are clipped at 0.

    Args:
        x: (R, L) idle times in minutes, right-aligned (newest in the last column).

    Returns:
        (R,) forecasts in minutes.

    """
    x = np.asarray(x, dtype=np.float64)
    n = np.sum(~np.isnan(x), axis=1)
    last = x[:, -1]
    out = last.copy()
    enough = n >= 3
    if enough.any():
        xs = x[enough]
        mu = np.nanmean(xs, axis=1, keepdims=True)
        d = xs - mu
        prod = d[:, 1:] * d[:, :-1]
        num = np.nansum(prod, axis=1)
        den = np.nansum(np.where(np.isnan(prod), np.nan, d[:, :-1] ** 2), axis=1)
        phi = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        phi = np.clip(phi, -0.95, 0.95)
        out[enough] = mu[:, 0] + phi * (xs[:, -1] - mu[:, 0])
    return np.maximum(out, 0.0)


@register
class HybridHistogram(Policy):
    """Per-function pre-warm / keep-alive windows from the idle-time histogram (ATC'20)."""

    name: ClassVar[str] = "hybrid-histogram"
    scenario: ClassVar[str] = "serverless"
    defaults: ClassVar[dict[str, Any]] = {
        "range_min": 240.0,        # histogram range, minutes (the paper's 4 h)
        "bin_min": 1.0,            # bin width, minutes
        "head_percentile": 5.0,    # pre-warm percentile
        "tail_percentile": 99.0,   # keep-alive percentile
        "margin": 0.10,            # histogram margin (fraction): head −10 %, tail +10 %
        "cv_threshold": 2.0,       # histogram representative iff CV of bin counts >= this
        "min_idle_times": 5,       # ... and at least this many idle times (our default)
        "oob_threshold": 0.5,      # AR forecast when OOB share >= this (our default)
        "forecast_margin": 0.15,   # warm from (1−m)·forecast to (1+m)·forecast
        "ar_window": 32,           # idle times kept for the AR(1) fit
    }
    sweep_param: ClassVar[str | None] = "tail_percentile"
    sweep_grid: ClassVar[tuple[Any, ...]] = (90.0, 95.0, 99.0, 99.9)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        checks = [
            ("range_min", p["range_min"] > 0), ("bin_min", p["bin_min"] > 0),
            ("head_percentile", 0 <= p["head_percentile"] <= 100),
            ("tail_percentile", 0 <= p["tail_percentile"] <= 100),
            ("margin", 0 <= p["margin"] < 1), ("forecast_margin", 0 <= p["forecast_margin"] < 1),
            ("cv_threshold", p["cv_threshold"] >= 0), ("min_idle_times", p["min_idle_times"] >= 0),
            ("oob_threshold", 0 < p["oob_threshold"] <= 1), ("ar_window", p["ar_window"] >= 1),
        ]
        for key, ok in checks:
            if not ok:
                raise ValueError(f"hybrid-histogram: invalid {key}={p[key]!r}")
        if p["head_percentile"] > p["tail_percentile"]:
            raise ValueError("hybrid-histogram: head_percentile must be <= tail_percentile")
        self.n_bins = max(1, int(round(p["range_min"] / p["bin_min"])))

    # ----------------------------------------------------------------- memory
    def _init_memory(self, n_f: int) -> dict[str, np.ndarray]:
        return {
            "hist": np.zeros((n_f, self.n_bins), dtype=np.int32),  # (F, B)
            "n_in": np.zeros(n_f, dtype=np.int64),  # in-range idle times, = hist.sum(1)
            "sumsq": np.zeros(n_f, dtype=np.int64),  # sum of squared bin counts
            "oob": np.zeros(n_f, dtype=np.int64),
            # last_busy[f, k]: last step in which instance k+1 of f was busy (c >= k+1), -1 never
            "last_busy": np.full((n_f, 1), -1, dtype=np.int64),  # (F, K), K grows with peak c
            "idle": np.full((n_f, int(self.params["ar_window"])), np.nan),  # (F, L) minutes
            "pre": np.zeros(n_f, dtype=np.int64),  # steps
            "ka": np.zeros(n_f, dtype=np.int64),  # steps
            "mode": np.zeros(n_f, dtype=np.int8),
        }

    def windows(self, hist: np.ndarray, oob: np.ndarray, idle: np.ndarray, step_s: float,
                n_in: np.ndarray | None = None, sumsq: np.ndarray | None = None,
                rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Pre-warm start and keep-alive end (in steps) and the mode, per function.

        Args:
            hist: (R, B) in-range idle-time counts.
            oob: (R,) out-of-range counts.
            idle: (R, L) recent idle times in minutes, NaN-padded on the left.
            step_s: step length in seconds.
            n_in: (R,) ``hist.sum(1)`` when already known (speed).
            sumsq: (R,) sum of squared bin counts when already known (speed).
            rows: when given, ``hist`` holds every function and only these rows of it are
                read (the other arguments are already those rows); saves copying it.

        Returns:
            ``pre`` (R,), ``ka`` (R,) in steps, and ``mode`` (R,).

        """
        p = self.params
        per_min = 60.0 / step_s  # steps per minute
        n_bins = hist.shape[1]
        if rows is None:
            rows = np.arange(hist.shape[0])
        in_range = hist[rows].sum(axis=1) if n_in is None else n_in
        if sumsq is None:
            sumsq = np.square(hist[rows].astype(np.int64)).sum(axis=1)
        total = in_range + oob
        mean = in_range / n_bins
        # population std of the bin counts from running sums: E[x^2] - mean^2
        std = np.sqrt(np.maximum(sumsq / n_bins - mean * mean, 0.0))
        cv = np.divide(std, mean, out=np.zeros_like(std), where=mean > 0)
        oob_share = np.divide(oob, total, out=np.zeros(len(oob)), where=total > 0)

        mode = np.full(len(oob), MODE_FALLBACK, dtype=np.int8)
        use_ar = (total > 0) & (oob_share >= p["oob_threshold"])
        use_hist = ~use_ar & (total >= p["min_idle_times"]) & (cv >= p["cv_threshold"])
        mode[use_ar] = MODE_FORECAST
        mode[use_hist] = MODE_HISTOGRAM

        # fallback: keep-alive for the whole histogram range, no pre-warming
        pre = np.zeros(len(oob), dtype=np.int64)
        ka = np.full(len(oob), _ceil(p["range_min"] * per_min), dtype=np.int64)
        if use_hist.any():
            h = hist[rows[use_hist]]
            cum = np.cumsum(h, axis=1) / in_range[use_hist, None]  # (r, B)
            head_bin = np.argmax(cum >= p["head_percentile"] / 100.0 - 1e-12, axis=1)
            tail_bin = np.argmax(cum >= p["tail_percentile"] / 100.0 - 1e-12, axis=1)
            head_min = head_bin * p["bin_min"]  # lower edge
            tail_min = (tail_bin + 1) * p["bin_min"]  # upper edge
            pre[use_hist] = _ceil(head_min * (1 - p["margin"]) * per_min)
            ka[use_hist] = _ceil(tail_min * (1 + p["margin"]) * per_min)
        if use_ar.any():
            fc = ar1_forecast(idle[use_ar])  # minutes
            m = p["forecast_margin"]
            a = _ceil(fc * (1 - m) * per_min)
            pre[use_ar] = a
            ka[use_ar] = np.maximum(_ceil(fc * (1 + m) * per_min), a + 1)
        return pre, ka, mode

    # ----------------------------------------------------------------- decide
    def decide(self, spec: Spec, obs: Observation, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        """Update the histograms with last step's idle times and set this step's warm counts."""
        history = obs.history  # (t, F)
        t, n_f = history.shape[0], len(spec.entities)
        step_s = float(spec.step_s)
        mem = memory or self._init_memory(n_f)
        if t > 0:
            busy = np.flatnonzero(history[-1] > 0)  # functions busy in step t−1
        else:
            busy = np.empty(0, dtype=np.int64)
        if busy.size:
            mem = {k: v.copy() for k, v in mem.items()}  # decide is pure: never edit inputs
            prev = mem["last_busy"][busy, 0]
            seen = prev >= 0
            rows = busy[seen]
            if rows.size:
                idle_min = (t - 1 - prev[seen] - 1) * step_s / 60.0  # whole idle steps
                b = np.floor(idle_min / self.params["bin_min"] + 1e-9).astype(np.int64)
                inr = b < self.n_bins
                r_in, b_in = rows[inr], b[inr]  # one idle time per function and step
                mem["sumsq"][r_in] += 2 * mem["hist"][r_in, b_in].astype(np.int64) + 1
                mem["hist"][r_in, b_in] += 1
                mem["n_in"][r_in] += 1
                np.add.at(mem["oob"], rows[~inr], 1)
                mem["idle"][rows, :-1] = mem["idle"][rows, 1:]
                mem["idle"][rows, -1] = idle_min
            c_busy = history[-1][busy]
            lb = mem["last_busy"]
            if c_busy.max() > lb.shape[1]:
                pad = np.full((n_f, int(c_busy.max()) - lb.shape[1]), -1, dtype=np.int64)
                lb = mem["last_busy"] = np.concatenate([lb, pad], axis=1)
            levels = np.arange(lb.shape[1])[None, :]  # instance k+1 busy iff k < c
            lb[busy] = np.where(levels < c_busy[:, None], t - 1, lb[busy])
            pre, ka, mode = self.windows(mem["hist"], mem["oob"][busy], mem["idle"][busy],
                                         step_s, n_in=mem["n_in"][busy],
                                         sumsq=mem["sumsq"][busy], rows=busy)
            mem["pre"][busy], mem["ka"][busy], mem["mode"][busy] = pre, ka, mode

        # instance k+1 is warm iff its idle steps e = t-1-last_busy satisfy pre <= e < ka,
        # i.e. t-ka <= last_busy <= t-1-pre; last_busy is non-increasing in k, so this is
        # max(c over the last ka steps) - max(c over the last pre steps)
        lb = mem["last_busy"]  # (F, K)
        warm = ((lb >= (t - mem["ka"])[:, None]) & (lb >= 0)).sum(axis=1) - (
            (lb >= (t - mem["pre"])[:, None]) & (lb >= 0)).sum(axis=1)
        counts = np.bincount(mem["mode"], minlength=4)
        return Decision(
            action={"warm": warm},
            why="per-function windows from idle-time histograms",
            details={MODE_NAMES[i]: int(counts[i]) for i in range(4)},
            state=mem,
        )
