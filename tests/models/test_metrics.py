"""Metrics against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from models.metrics import crps_samples, evaluate_samples, pinball


def test_crps_two_samples_by_hand():
    # samples {0, 1}, y = 0: E|X-y| = 0.5, E|X-X'| = 0.5 (pairs (0,1),(1,0) of 4) -> 0.25
    s = np.array([[0.0, 1.0]])
    assert crps_samples(s, np.array([0.0]))[0] == pytest.approx(0.25)
    # y = 3: E|X-y| = 2.5 -> 2.5 - 0.25
    assert crps_samples(s, np.array([3.0]))[0] == pytest.approx(2.25)


def test_crps_of_a_point_forecast_is_absolute_error():
    s = np.full((3, 7, 2), 2.0)
    y = np.array([[0.0, 2.0], [5.0, 1.5], [2.0, 2.0]])
    np.testing.assert_allclose(crps_samples(s, y), np.abs(2.0 - y))


def test_crps_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(4, 9))
    y = rng.normal(size=4)
    pairs = np.abs(s[:, :, None] - s[:, None, :]).mean((1, 2))
    brute = np.abs(s - y[:, None]).mean(1) - 0.5 * pairs
    np.testing.assert_allclose(crps_samples(s, y), brute)


def test_pinball_by_hand():
    assert pinball(np.array(1.0), np.array(2.0), 0.1) == pytest.approx(0.9)
    assert pinball(np.array(3.0), np.array(2.0), 0.1) == pytest.approx(0.1)


def test_wql_coverage_mse_mae_by_hand():
    # N=2, S=4, H=1, M=2. Indicator a: constant forecast 2, y = 1 and 3.
    # Indicator b: samples 0,1,2,3 (mean 1.5, median 1.5); y = 1 (inside) and 10 (outside).
    s = np.zeros((2, 4, 1, 2))
    s[:, :, 0, 0] = 2.0
    s[:, :, 0, 1] = [0.0, 1.0, 2.0, 3.0]
    y = np.array([[[1.0, 1.0]], [[3.0, 10.0]]])
    r = evaluate_samples(s, y, ["a", "b"])
    a, b = r["per_indicator"]["a"], r["per_indicator"]["b"]
    # wQL_q(a) = 2 * (pinball(1,2,q) + pinball(3,2,q)) / (1 + 3) = 2 * 1.0 / 4
    for q in ("0.1", "0.5", "0.9"):
        assert a[f"wql_{q}"] == pytest.approx(0.5)
    assert a["mse"] == pytest.approx(1.0) and a["mae"] == pytest.approx(1.0)
    assert a["coverage_90"] == pytest.approx(0.0)  # point forecast 2 never covers 1 or 3
    assert b["mse"] == pytest.approx(((1.5 - 1) ** 2 + (1.5 - 10) ** 2) / 2)
    assert b["coverage_90"] == pytest.approx(0.5)
    # upper 99 % quantile: a's is 2 (y 1 under, 3 over), b's 2.97 (y 1 under, 10 over)
    assert a["coverage_upper_99"] == pytest.approx(0.5)
    assert b["coverage_upper_99"] == pytest.approx(0.5)
    assert r["average"]["mse"] == pytest.approx((a["mse"] + b["mse"]) / 2)


def test_wql_undefined_for_all_zero_targets_and_left_out_of_average():
    s = np.zeros((3, 5, 1, 2))
    s[:, :, :, 1] = 1.0
    y = np.zeros((3, 1, 2))
    y[:, :, 1] = 2.0
    r = evaluate_samples(s, y, ["zero", "two"])
    assert r["per_indicator"]["zero"]["wql_0.5"] is None
    # two: pinball(2, 1, 0.5) = 0.5 each; 2 * 1.5 / 6 = 0.5
    assert r["per_indicator"]["two"]["wql_0.5"] == pytest.approx(0.5)
    assert r["average"]["wql_0.5"] == pytest.approx(0.5)
