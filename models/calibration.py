"""Recalibration of the predictive spread on a validation split (split-conformal style).

Target: the central 90% interval (5% to 95% sample quantiles) should cover 90% of held-out
values. For each indicator whose validation coverage misses 0.9 by more than a tolerance,
we find one factor ``c`` and replace every sample ``x`` by ``mean + c * (x - mean)``
(per forecast, step and indicator; scaling around the mean keeps the point forecast, and
so the MSE, unchanged). ``c`` is the conformal quantile of the per-point factor that would
just cover the observation: ``(y - mean) / (q95 - mean)`` above the mean,
``(mean - y) / (mean - q05)`` below; taking the ``ceil((n + 1) * 0.9)``-th smallest of the
``n`` per-point factors (the split-conformal quantile) gives at least 90% coverage on
exchangeable data (and, without ties, less than ``90% + 1 / (n + 1)``). The shape of the
distribution (skew, several modes) is kept; only its width around the mean changes.
"""

from __future__ import annotations

import numpy as np

from common.errors import NoDataError

#: Quantiles of the central interval that is calibrated.
LOWER, UPPER, LEVEL = 0.05, 0.95, 0.9

#: Factors are kept within these bounds so that one odd validation split cannot blow the
#: spread up (or collapse it) without limit.
MIN_FACTOR, MAX_FACTOR = 0.05, 20.0


def apply_spread(samples: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Scale samples ``(N, S, H, M)`` around their mean by ``factors (M,)``."""
    med = samples.mean(axis=1, keepdims=True)  # (N, 1, H, M)
    return med + (samples - med) * np.asarray(factors)[None, None, None, :]


def coverage(samples: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-indicator coverage ``(M,)`` of the central 90% interval.

    Args:
        samples: ``(N, S, H, M)``.
        y: ``(N, H, M)`` observations.

    """
    lo = np.quantile(samples, LOWER, axis=1)
    hi = np.quantile(samples, UPPER, axis=1)
    inside = (y >= lo) & (y <= hi)
    return inside.reshape(-1, y.shape[-1]).mean(axis=0)


def spread_factors(samples: np.ndarray, y: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Per-indicator factors ``(M,)`` giving 90% conformal coverage on ``(samples, y)``."""
    med = samples.mean(axis=1)  # (N, H, M) the centre the spread is scaled around
    lo = np.quantile(samples, LOWER, axis=1)
    hi = np.quantile(samples, UPPER, axis=1)
    above = y >= med
    half = np.where(above, hi - med, med - lo)
    dist = np.abs(y - med)
    # A zero-width half interval covers only an exact hit: factor 0 if hit, else "infinite".
    need = np.where(dist <= eps, 0.0, dist / np.maximum(half, eps))
    need = need.reshape(-1, y.shape[-1])  # (N*H, M)
    n = need.shape[0]
    # the ceil((n + 1) * 0.9)-th smallest, by index: np.quantile's "higher" interpolates on
    # (n - 1) positions and took one order statistic more (wider than conformal needs)
    rank = min(n, int(np.ceil((n + 1) * LEVEL - 1e-9)))
    fac = np.partition(need, rank - 1, axis=0)[rank - 1]
    return np.clip(fac, MIN_FACTOR, MAX_FACTOR)


def calibrate_predictor(predictor, validation, tolerance: float = 0.02) -> dict:
    """Fit ``predictor.calibration`` on validation windows; record before/after coverage.

    Only indicators whose coverage misses 0.9 by more than ``tolerance`` get a factor
    other than 1. The result is also stored in ``predictor.fit_info["calibration"]``.

    Raises:
        NoDataError: the validation series hold no complete window.

    """
    from models.data import make_windows

    x, y, t = make_windows(validation, predictor.context_length, predictor.prediction_length)
    predictor.calibration = None
    outs = predictor.predict_windows(x, t)
    keep = [i for i, o in enumerate(outs) if hasattr(o, "samples")]
    if not keep:
        raise NoDataError("no validation window could be forecast")
    samples = np.stack([outs[i].samples for i in keep])  # (N, S, H, M)
    yv = y[keep]
    before = coverage(samples, yv)
    fac = spread_factors(samples, yv)
    fac = np.where(np.abs(before - LEVEL) > tolerance, fac, 1.0)
    after = coverage(apply_spread(samples, fac), yv)
    predictor.calibration = fac if np.any(fac != 1.0) else None
    info = {
        "windows": len(keep),
        "coverage_before": before.round(4).tolist(),
        "coverage_after": after.round(4).tolist(),
        "factors": fac.round(4).tolist(),
    }
    predictor.fit_info["calibration"] = info
    return info
