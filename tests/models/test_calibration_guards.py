"""The conformal spread factor by hand: its rank and its bounds (issue 12, item 11)."""

from __future__ import annotations

import numpy as np
import pytest

from models.calibration import MAX_FACTOR, MIN_FACTOR, spread_factors

# every forecast's samples: 101 evenly spaced values on [-1, 1] -> mean 0, q05 -0.9, q95 0.9
GRID = np.linspace(-1.0, 1.0, 101)


def forecasts(y):
    """Samples (N, 101, 1, 1) around 0 for N observations ``y`` (N,) -> (N, 1, 1)."""
    y = np.asarray(y, dtype=np.float64)
    s = np.broadcast_to(GRID[None, :, None, None], (len(y), len(GRID), 1, 1)).copy()
    return s, y[:, None, None]


@pytest.mark.parametrize(
    ("n", "rank"), [(20, 19), (30, 28), (100, 91), (10, 10), (9, 9), (19, 18), (29, 27)]
)
def test_the_factor_is_the_conformal_order_statistic(n, rank):
    # per-point factors u, 2u, ..., nu with u = 15 / n (within the clip bounds), from
    # observations 0.9 * i * u above the mean, or below it for odd i, in shuffled order:
    # the conformal factor is the ceil((n + 1) * 0.9)-th smallest one
    u = 15.0 / n
    i = np.arange(1, n + 1, dtype=np.float64)
    y = np.where(i % 2 == 0, 0.9 * i * u, -0.9 * i * u)
    rng = np.random.default_rng(n)
    s, yy = forecasts(rng.permutation(y))
    fac = spread_factors(s, yy)
    assert fac.shape == (1,)
    assert fac[0] == pytest.approx(rank * u, rel=1e-9)
    assert rank == int(np.ceil((n + 1) * 0.9 - 1e-9))


def test_coverage_of_a_fresh_point_is_at_least_90_percent_on_small_splits():
    # exchangeable: calibrate on 20 points, test on the 21st, many times over. The conformal
    # rank gives P(cover) = 19 / 21 = 0.905 exactly; one rank lower (the ceil(n * 0.9)-th)
    # would give 18 / 21 = 0.857
    rng = np.random.default_rng(7)
    trials, n = 4000, 20
    z = np.abs(rng.standard_normal((trials, n + 1)))  # |y - mean| / half-width, continuous
    covered = 0
    for row in z:
        s, yy = forecasts(0.9 * row[:n])
        fac = spread_factors(s, yy)[0]
        covered += row[n] <= fac
    assert covered / trials == pytest.approx(19 / 21, abs=0.015)


def test_factors_are_clipped_to_their_bounds():
    # every observation 100 half-widths out: the factor would be 100; it is held at 20
    s, yy = forecasts(np.full(30, 90.0))
    assert spread_factors(s, yy)[0] == MAX_FACTOR == 20.0
    # every observation exactly at the mean: the factor would be 0 (collapse); held at 0.05
    s, yy = forecasts(np.zeros(30))
    assert spread_factors(s, yy)[0] == MIN_FACTOR == 0.05
    # in between: left alone
    s, yy = forecasts(np.full(30, 4.5))
    assert spread_factors(s, yy)[0] == pytest.approx(5.0)


def test_each_side_is_scaled_by_its_own_half_width():
    # skewed forecasts: mean 0, q95 = +1 (short upper tail), q05 = -3 (long lower tail)
    x = np.concatenate([np.full(10, -3.4), np.linspace(-3.0, 1.0, 81), np.full(10, 1.0)])
    s = np.broadcast_to((x - x.mean())[None, :, None, None], (30, len(x), 1, 1)).copy()
    lo, hi = np.quantile(s[0, :, 0, 0], [0.05, 0.95])
    assert hi - 0 < 0 - lo  # the upper half interval is the narrower one
    # observations 2 above the mean need 2 / (q95 - mean); 2 below need 2 / (mean - q05)
    up = spread_factors(s, np.full((30, 1, 1), 2.0))[0]
    down = spread_factors(s, np.full((30, 1, 1), -2.0))[0]
    assert up == pytest.approx(2.0 / hi) and down == pytest.approx(2.0 / -lo)


def test_one_factor_per_indicator_over_all_steps():
    # N=40 forecasts, H=3 steps, M=2 indicators; indicator 0 misses by 2 half-widths,
    # indicator 1 by 5, at every step
    s = np.broadcast_to(GRID[None, :, None, None], (40, len(GRID), 3, 2)).copy()
    y = np.empty((40, 3, 2))
    y[..., 0], y[..., 1] = 0.9 * 2.0, -0.9 * 5.0
    np.testing.assert_allclose(spread_factors(s, y), [2.0, 5.0])


def test_apply_spread_keeps_the_skew_and_factor_one_is_the_identity():
    from models.calibration import apply_spread

    x = np.array([0.0, 0.0, 0.0, 1.0, 9.0])  # mean 2, long upper tail
    s = x[None, :, None, None]
    np.testing.assert_allclose(apply_spread(s, np.array([1.0])), s)
    np.testing.assert_allclose(apply_spread(s, np.array([2.0]))[0, :, 0, 0], [-2, -2, -2, 0, 16])


def test_coverage_is_per_indicator_over_all_steps():
    from models.calibration import coverage

    s = np.broadcast_to(GRID[None, :, None, None], (10, len(GRID), 3, 2)).copy()
    y = np.zeros((10, 3, 2))
    y[:5, :, 1] = 5.0  # indicator 1 missed in half the forecasts, at every step
    np.testing.assert_allclose(coverage(s, y), [1.0, 0.5])


def test_a_zero_width_forecast_needs_no_factor_when_hit_and_the_largest_when_missed():
    s = np.ones((30, 50, 1, 1))  # every sample 1.0: no spread at all
    assert spread_factors(s, np.ones((30, 1, 1)))[0] == MIN_FACTOR  # exact hits
    assert spread_factors(s, np.full((30, 1, 1), 1.5))[0] == MAX_FACTOR  # misses


def test_the_interval_is_closed_an_observation_on_a_quantile_is_covered():
    s = np.broadcast_to(GRID[None, :, None, None], (2, len(GRID), 1, 1)).copy()
    lo, hi = np.quantile(GRID, [0.05, 0.95])
    from models.calibration import coverage

    np.testing.assert_array_equal(coverage(s, np.array([[[lo]], [[hi]]])), [1.0])
