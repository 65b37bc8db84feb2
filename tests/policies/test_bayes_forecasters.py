"""The online forecasters that feed ``bayes`` in replay."""

from __future__ import annotations

import numpy as np
import pytest

from policies.forecasters import (
    GrowthBootstrapForecaster,
    IntermittentCountForecaster,
    default_forecaster,
)


def test_growth_bootstrap_shape_and_persistence_without_history():
    f = GrowthBootstrapForecaster(num_samples=16, extra_steps=1)
    out = f(np.array([5.0]), 100.0, 60.0, 3)
    assert out.samples.shape == (16, 4, 1)  # one step more than asked: see extra_steps
    assert out.start == 100.0 and out.step == 60.0 and out.model == "growth-bootstrap"
    np.testing.assert_allclose(out.samples, 5.0)  # no origin yet: the current level holds


def test_growth_bootstrap_replays_past_growth_in_log_space():
    # the series doubles every step: every path must double too, from the last value
    y = 2.0 ** np.arange(20)
    f = GrowthBootstrapForecaster(num_samples=8, neighbours=0.0, season_s=0.0, extra_steps=0)
    out = f(y, 0.0, 1.0, 2)
    c = 0.01 * y.mean()  # the forecaster's offset
    expect_1 = np.exp(np.log(y[-1] + c) + np.log(y[1:-1] + c) - np.log(y[:-2] + c)) - c
    assert np.all(np.isin(np.round(out.samples[:, 0, 0], 6), np.round(expect_1, 6)))
    assert out.samples[:, 0, 0].min() > y[-1]  # every path grows, as the past always did


def test_growth_bootstrap_joint_paths_share_one_origin():
    # two series that always move in opposite directions: every sampled path must too
    rng = np.random.default_rng(0)
    a = np.cumsum(rng.normal(size=300))
    y = np.column_stack([a, -a]) + 100.0
    f = GrowthBootstrapForecaster(num_samples=64, space="linear", season_s=0.0, extra_steps=0)
    out = f(y, 0.0, 1.0, 5)
    inc = out.samples - y[-1][None, None, :]
    np.testing.assert_allclose(inc[..., 0], -inc[..., 1], atol=1e-9)


def test_growth_bootstrap_reads_history_only_and_is_seeded():
    y = np.sin(np.arange(500) / 10.0) + 2.0
    a = GrowthBootstrapForecaster(seed=3)(y, 0.0, 1.0, 4).samples
    b = GrowthBootstrapForecaster(seed=3)(y.copy(), 0.0, 1.0, 4).samples
    np.testing.assert_array_equal(a, b)
    y2 = y.copy()
    GrowthBootstrapForecaster()(y2, 0.0, 1.0, 4)
    np.testing.assert_array_equal(y, y2)  # the history is not modified


def test_analog_offset_decay_respects_past_joint_levels():
    # two servers alternate 100 W / 500 W in antiphase: their sum is always 600 W. With the
    # analog's own future (offset fading fast), forecasts keep the sum near 600 W.
    t = np.arange(400)
    s0 = np.where((t // 5) % 2 == 0, 100.0, 500.0)
    y = np.column_stack([s0, 600.0 - s0])
    f = GrowthBootstrapForecaster(space="linear", season_s=0.0, offset_decay=0.0,
                                  num_samples=64, extra_steps=0)
    row = f(y, 0.0, 1.0, 10).samples.sum(axis=2)
    np.testing.assert_allclose(row, 600.0)


def test_intermittent_forecaster_resets_on_a_new_history():
    f = IntermittentCountForecaster(num_samples=10)
    h = np.zeros((30, 2))
    h[::3, 0] = 1.0
    f(h[:20], 0.0, 60.0, 1)
    assert f._t == 20
    f(h[:21], 0.0, 60.0, 1)  # extends: folds one row
    assert f._t == 21
    f(np.ones((5, 2)), 0.0, 60.0, 1)  # not an extension: starts over
    assert f._t == 5 and f.n_act.tolist() == [5.0, 5.0]


def test_intermittent_forecaster_multi_step_paths_chain_the_hazard():
    f = IntermittentCountForecaster(num_samples=400, seed=1, age_smooth=0.0)
    h = np.zeros((200, 1))
    h[::4, 0] = 1.0  # every 4th step
    out = f(h[:197], 0.0, 60.0, 4)  # last active at 196, age 0: next active in 3 steps
    frac = (out.samples[:, :, 0] > 0).mean(axis=0)
    assert frac[3] > 0.8 and frac[:3].max() < 0.2


def test_default_forecasters():
    assert isinstance(default_forecaster("vm"), GrowthBootstrapForecaster)
    assert isinstance(default_forecaster("serverless"), IntermittentCountForecaster)
    assert default_forecaster("power").offset_decay < 1.0
    with pytest.raises(ValueError, match="scenario"):
        default_forecaster("nope")


def test_state_round_trip_through_json_continues_exactly_and_a_sliding_window_is_followed():
    """The daemon's way: a fresh forecaster per decision, its state restored from JSON,
    fed a window that slides (the oldest row drops out as a new one arrives)."""
    import json

    from policies import memory

    rng = np.random.default_rng(3)
    hist = (rng.random((400, 3)) < [0.05, 0.4, 0.9]) * rng.integers(1, 5, (400, 3))
    window = 120
    for make, horizon in ((lambda: IntermittentCountForecaster(seed=1), 3),
                          (lambda: GrowthBootstrapForecaster(space="log", seed=1), 4)):
        whole = make()  # the replay's way: one instance, the whole history
        state = None
        for t in range(60, 400, 7 if horizon == 4 else 2):
            now = 60.0 * t
            ref = whole(hist[:t].astype(float), now, 60.0, horizon)
            fresh = make()
            if state is not None:
                fresh.load_state_dict(memory.load(json.loads(json.dumps(memory.dump(state)))))
            lo = max(0, t - window) if isinstance(fresh, IntermittentCountForecaster) else 0
            got = fresh(hist[lo:t].astype(float), now, 60.0, horizon)
            state = fresh.state_dict()
            np.testing.assert_array_equal(got.samples, ref.samples)
