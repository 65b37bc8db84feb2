"""Forecast accuracy from samples: MSE, MAE, CRPS, weighted quantile loss, coverage.

Conventions (all arrays in the scale the metrics are reported in):
``samples (N, S, H, M)``, ``y (N, H, M)``. Per-indicator figures average over N and H.

* MSE uses the sample mean (it minimises squared error); MAE uses the sample median.
* CRPS uses the energy form ``E|X - y| - 0.5 E|X - X'|`` with the plain (V-statistic)
  sample estimator ``mean_i |x_i - y| - 1/(2 S^2) sum_ij |x_i - x_j|``, computed in
  O(S log S) from sorted samples.
* wQL at level q (GluonTS convention): ``2 * sum pinball_q(y, q-quantile) / sum |y|`` per
  indicator; undefined (None) when ``sum |y| == 0`` (e.g. a constant column that MinMax
  scaling maps to 0), and left out of averages then.
* coverage_90: fraction of observations within the 5%..95% sample quantiles.
"""

from __future__ import annotations

import numpy as np

QUANTILES = (0.1, 0.5, 0.9)


def crps_samples(samples: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS per observation from samples along axis 1.

    Args:
        samples: ``(N, S, ...)``.
        y: ``(N, ...)``.

    Returns:
        ``(N, ...)`` CRPS values.

    """
    s = samples.shape[1]
    term1 = np.abs(samples - y[:, None]).mean(axis=1)
    xs = np.sort(samples, axis=1)
    w = (2.0 * np.arange(1, s + 1) - s - 1).reshape((1, s) + (1,) * (samples.ndim - 2))
    # sum_ij |x_i - x_j| = 2 * sum_i (2i - S - 1) x_(i)
    term2 = (w * xs).sum(axis=1) / (s * s)
    return term1 - term2


def pinball(y: np.ndarray, q_pred: np.ndarray, q: float) -> np.ndarray:
    """Pinball (quantile) loss per observation."""
    d = y - q_pred
    return np.maximum(q * d, (q - 1.0) * d)


def evaluate_samples(samples: np.ndarray, y: np.ndarray, indicators) -> dict:
    """All metrics, per indicator and averaged over indicators.

    Returns:
        ``{"per_indicator": {name: {...}}, "average": {...}}`` with keys ``mse``, ``mae``,
        ``crps``, ``wql_0.1``, ``wql_0.5``, ``wql_0.9``, ``wql_mean``, ``coverage_90``,
        ``coverage_upper_99`` (share of values at or under the upper 99 % quantile).

    """
    m = y.shape[-1]
    mean = samples.mean(axis=1)
    med = np.median(samples, axis=1)
    flat = lambda a: a.reshape(-1, m)  # noqa: E731  (N*H, M)
    per: dict[str, np.ndarray | list] = {
        "mse": flat((mean - y) ** 2).mean(axis=0),
        "mae": flat(np.abs(med - y)).mean(axis=0),
        "crps": flat(crps_samples(samples, y)).mean(axis=0),
    }
    denom = flat(np.abs(y)).sum(axis=0)
    wqls = []
    for q in QUANTILES:
        qp = np.quantile(samples, q, axis=1)
        num = 2.0 * flat(pinball(y, qp, q)).sum(axis=0)
        w = np.where(denom > 0, num / np.where(denom > 0, denom, 1.0), np.nan)
        per[f"wql_{q}"] = w
        wqls.append(w)
    per["wql_mean"] = np.mean(wqls, axis=0)
    lo = np.quantile(samples, 0.05, axis=1)
    hi = np.quantile(samples, 0.95, axis=1)
    per["coverage_90"] = flat((y >= lo) & (y <= hi)).mean(axis=0)
    # the tail a 1 % SLA lives in: how often the realised value stays at or under the upper
    # 99 % quantile (0.99 when calibrated; above: the tail is too wide and capacity idles)
    per["coverage_upper_99"] = flat(y <= np.quantile(samples, 0.99, axis=1)).mean(axis=0)

    def clean(v: float) -> float | None:
        return None if not np.isfinite(v) else float(v)

    per_ind = {
        str(name): {k: clean(v[j]) for k, v in per.items()} for j, name in enumerate(indicators)
    }
    avg = {}
    for k, v in per.items():
        v = np.asarray(v, dtype=np.float64)
        avg[k] = clean(np.nanmean(v)) if np.isfinite(v).any() else None
    return {"per_indicator": per_ind, "average": avg}
