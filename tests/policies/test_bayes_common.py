"""Shared math of the Bayesian decision engine, checked against hand-computed answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from policies.bayes_common import (
    RiskLearner,
    chance_constrained_units,
    newsvendor_counts,
    priced_units,
    rate_limit,
    stabilised_target,
    window_steps,
)


def test_chance_constraint_reads_the_right_order_statistic():
    x = np.arange(1.0, 101.0)  # 100 samples 1..100, shuffled to show order does not matter
    np.random.default_rng(0).shuffle(x)
    # eps 0.05: 5 paths may exceed, capacity must reach the 95th value (95) -> ceil(95/7) = 14
    n, p = chance_constrained_units(x, 7.0, 0.05)
    assert (n, p) == (14, 0.02)  # 14 * 7 = 98: only 99 and 100 exceed
    # eps 0.2: must reach 80 -> ceil(80/7) = 12, capacity 84 leaves 16 above
    assert chance_constrained_units(x, 7.0, 0.2) == (12, 0.16)
    # eps 0: the maximum, 100 -> 15
    assert chance_constrained_units(x, 7.0, 0.0)[0] == 15
    # exact multiples are not rounded up by float noise: 30 / 10 = 3
    assert chance_constrained_units(np.full(10, 30.0), 10.0, 0.0)[0] == 3


def test_chance_constraint_floor_and_ceiling():
    x = np.arange(1.0, 101.0)
    assert chance_constrained_units(x, 10.0, 0.0, floor=12)[0] == 12
    n, p = chance_constrained_units(x, 10.0, 0.0, ceiling=5)
    assert n == 5 and p == 0.5  # the ceiling binds and the remaining risk is reported


def test_chance_constraint_rejects_bad_inputs():
    with pytest.raises(ValueError, match="capacity per unit"):
        chance_constrained_units(np.ones(3), 0.0, 0.1)
    with pytest.raises(ValueError, match="eps"):
        chance_constrained_units(np.ones(3), 1.0, 1.0)
    with pytest.raises(ValueError, match="no samples"):
        chance_constrained_units(np.ones(0), 1.0, 0.1)


def test_priced_units_covers_cheap_risk_and_leaves_expensive_risk():
    # 90 paths at 10, 10 paths spike to 100; one unit serves 10
    x = np.array([10.0] * 90 + [100.0] * 10)
    # price 20: 1 unit costs 1 + 20 * 0.1 = 3, covering the spike costs 10 -> 1 unit
    n, p, obj = priced_units(x, 10.0, 20.0, 0.25)
    assert (n, p, obj) == (1, 0.1, 3.0)
    # price 200: 1 + 200 * 0.1 = 21 > 10 -> cover the spike
    assert priced_units(x, 10.0, 200.0, 0.25)[:2] == (10, 0.0)
    # the hard constraint still binds: max_risk 0.05 forbids leaving 10 % uncovered
    assert priced_units(x, 10.0, 0.0, 0.05)[0] == 10


def test_window_steps_interval_semantics():
    # steps of 300 s from t=1000: step h covers [1000 + 300h, 1300 + 300h)
    assert window_steps(1000.0, 300.0, 5, 1060.0, 1075.0) == slice(0, 1)
    assert window_steps(1000.0, 300.0, 5, 1250.0, 1310.0) == slice(0, 2)
    assert window_steps(1000.0, 300.0, 5, 1300.0, 1600.0) == slice(1, 2)
    # past the horizon: the last step is read rather than nothing
    assert window_steps(1000.0, 300.0, 2, 5000.0, 6000.0) == slice(1, 2)


def test_newsvendor_counts_known_distribution():
    # C uniform on 0..9 (10 samples each): F(w) = (w + 1) / 10
    x = np.repeat(np.arange(10.0), 10)[:, None]  # (100, 1)
    assert newsvendor_counts(x, 0.75).tolist() == [7]  # least w with F(w) >= 0.75
    assert newsvendor_counts(x, 0.8).tolist() == [7]  # F(7) = 0.8 exactly
    assert newsvendor_counts(x, 0.05).tolist() == [0]
    assert newsvendor_counts(x, 1.0).tolist() == [9]
    # per-column fractiles, and fractional samples count as whole instances (ceil)
    y = np.column_stack([np.repeat(np.arange(10.0), 10), np.full(100, 2.2)])
    assert newsvendor_counts(y, np.array([0.35, 0.5])).tolist() == [3, 3]


def test_risk_learner_moves_quantile_up_after_violations_and_down_after_clean_run():
    rl = RiskLearner(target=0.01, gain=0.05, min_ratio=0.02)
    post = rl.initial()
    assert rl.eps(post) == pytest.approx(0.01)
    hot = rl.update(post, violations=3, trials=10)
    assert rl.eps(hot) < 0.01  # higher quantile
    assert rl.prob_above_target(hot) > 0.9
    clean = post
    for _ in range(300):
        clean = rl.update(clean, 0, 1)
    assert rl.eps(clean) > 0.01  # lower quantile after a long clean run
    # bounded: eps stays within [min_ratio, max_ratio] * target
    worst = post
    for _ in range(500):
        worst = rl.update(worst, 1, 1)
    assert rl.eps(worst) == pytest.approx(0.01 * rl.min_ratio)
    assert rl.eps(clean) <= 0.01 * rl.max_ratio + 1e-12
    # the input posterior is never modified
    assert post == rl.initial()


def test_risk_learner_posterior_is_discounted_beta():
    rl = RiskLearner(target=0.1, prior_n=10.0, discount=0.5, gain=0.0)
    post = rl.update(None, 1, 1)  # prior Beta(1, 9) + one violation
    assert (post["a"], post["b"]) == (2.0, 9.0)
    post = rl.update(post, 0, 1)  # evidence above the prior halves: a = 1 + 0.5*1, b = 9 + 1
    assert (post["a"], post["b"]) == (1.5, 10.0)
    with pytest.raises(ValueError):
        rl.update(post, 2, 1)


def test_stabilised_target_and_rate_limits():
    hist = [(0.0, 10), (100.0, 8)]
    # within the 300 s window the largest recommendation (10) still holds
    out, kept = stabilised_target(hist, 200.0, 4, 300.0)
    assert out == 10 and kept[-1] == (200.0, 4)
    # at t=350 the entry from t=0 has left the window
    assert stabilised_target(hist, 350.0, 4, 300.0)[0] == 8
    # scale-ups apply at once
    assert stabilised_target(hist, 200.0, 20, 300.0)[0] == 20
    assert hist == [(0.0, 10), (100.0, 8)]  # not modified
    kw = dict(max_up_ratio=2.0, max_up_abs=4, max_down_ratio=0.5, max_down_abs=1)
    assert rate_limit(10, 50, **kw) == 20  # at most doubled
    assert rate_limit(1, 50, **kw) == 5  # ... or 4 more, whichever is more
    assert rate_limit(10, 1, **kw) == 5  # at most half removed
    assert rate_limit(1, 0, **kw) == 0  # ... or at least one
    assert rate_limit(7, 7, **kw) == 7
    assert math.isclose(rate_limit(10, 12, **kw), 12)
