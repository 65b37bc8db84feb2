"""Spread recalibration moves coverage toward 90% and keeps the point forecast."""

from __future__ import annotations

import numpy as np
import pytest

from models.base import Predictor
from models.calibration import apply_spread, calibrate_predictor, coverage, spread_factors
from models.data import Series


def test_apply_spread_keeps_mean_and_scales_width():
    rng = np.random.default_rng(0)
    s = rng.gamma(2.0, size=(3, 200, 2, 2))
    out = apply_spread(s, np.array([2.0, 0.5]))
    np.testing.assert_allclose(out.mean(1), s.mean(1))
    np.testing.assert_allclose(out[..., 0].std(1), 2.0 * s[..., 0].std(1))
    np.testing.assert_allclose(out[..., 1].std(1), 0.5 * s[..., 1].std(1))


def test_conformal_factor_reaches_target_on_fresh_data():
    rng = np.random.default_rng(1)

    # forecasts N(0, 0.5^2) but truth N(0, 1): too narrow (coverage ~ 59%)
    def draw(n):
        return rng.normal(0, 0.5, size=(n, 200, 1, 1)), rng.normal(0, 1, size=(n, 1, 1))

    s, y = draw(2000)
    assert coverage(s, y)[0] == pytest.approx(0.59, abs=0.04)
    fac = spread_factors(s, y)
    assert fac[0] == pytest.approx(2.0, rel=0.1)  # 1.645 / (0.5 * 1.645)
    s2, y2 = draw(2000)
    assert coverage(apply_spread(s2, fac), y2)[0] == pytest.approx(0.9, abs=0.03)


class _Narrow(Predictor):
    """Last value plus N(0, 0.2^2) for a random walk with unit steps: far too narrow."""

    model_name = "narrow-test"

    def _sample(self, x, t, num_samples, rng):
        noise = rng.normal(0, 0.2, size=(x.shape[0], num_samples, 1, x.shape[2]))
        return x[:, -1][:, None, None, :] + noise


def _walk(n, seed):
    rng = np.random.default_rng(seed)
    v = np.cumsum(rng.normal(size=(n, 2)), axis=0)
    return Series(v, 600.0 * np.arange(n), ("a", "b"))


def test_calibrate_predictor_moves_coverage_toward_target():
    cfg = {
        "context_length": 5,
        "prediction_length": 1,
        "indicators": ["a", "b"],
        "num_samples": 200,
    }
    pred = _Narrow(cfg)
    info = calibrate_predictor(pred, [_walk(800, 2)], tolerance=0.02)
    assert max(info["coverage_before"]) < 0.5
    assert all(abs(c - 0.9) < 0.02 for c in info["coverage_after"])
    from models.data import make_windows

    x, y, t = make_windows([_walk(800, 3)], 5, 1)
    fresh = np.stack([f.samples for f in pred.predict_windows(x, t)])
    cov = coverage(fresh, y)
    assert np.all(np.abs(cov - 0.9) < 0.04), cov


def test_well_calibrated_indicator_is_left_alone():
    class _Exact(Predictor):
        """Forecasts N(0, 1), the true distribution of the iid series below."""

        def _sample(self, x, t, num_samples, rng):
            return rng.normal(size=(x.shape[0], num_samples, 1, 1))

    rng = np.random.default_rng(4)
    n = 3000
    series = Series(rng.normal(size=(n, 1)), np.arange(n) * 60.0, ("a",))
    pred = _Exact(
        {"context_length": 1, "prediction_length": 1, "indicators": ["a"], "num_samples": 400}
    )
    info = calibrate_predictor(pred, [series], tolerance=0.03)
    assert abs(info["coverage_before"][0] - 0.9) < 0.03
    assert info["factors"] == [1.0] and pred.calibration is None
