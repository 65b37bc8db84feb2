"""The online models (``growth-bootstrap``, ``intermittent-count``) that feed ``bayes``.

Their registry contract (fit, save, load, predict windows, fallback) is checked with every
model's in ``test_model_contract.py``; here: what they forecast online, and their state.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from common.errors import ConfigError
from models.base import Predictor, get_estimator
from models.data import Series
from models.online import online_predictor


def growth(**kw):
    return online_predictor("growth-bootstrap", **kw)


def counts(**kw):
    return online_predictor("intermittent-count", **kw)


# --------------------------------------------------------------------------- growth bootstrap


def test_growth_bootstrap_shape_and_persistence_without_history():
    f = growth(num_samples=16, extra_steps=1)
    out = f.forecast(np.array([5.0]), 100.0, 60.0, 3)
    assert out.samples.shape == (16, 4, 1)  # one step more than asked: see extra_steps
    assert out.start == 100.0 and out.step == 60.0 and out.model == "growth-bootstrap"
    np.testing.assert_allclose(out.samples, 5.0)  # no origin yet: the current level holds


def test_growth_bootstrap_replays_past_growth_in_log_space():
    # the series doubles every step: every path must double too, from the last value
    y = 2.0 ** np.arange(20)
    f = growth(num_samples=8, neighbours=0.0, season_s=0.0, extra_steps=0)
    out = f.forecast(y, 0.0, 1.0, 2)
    c = 0.01 * y.mean()  # the model's offset
    expect_1 = np.exp(np.log(y[-1] + c) + np.log(y[1:-1] + c) - np.log(y[:-2] + c)) - c
    assert np.all(np.isin(np.round(out.samples[:, 0, 0], 6), np.round(expect_1, 6)))
    assert out.samples[:, 0, 0].min() > y[-1]  # every path grows, as the past always did


def test_growth_bootstrap_growth_from_idle_does_not_multiply_a_burst():
    # an intermittent series (the bundled LLM trace at 15 s): idle, then a burst. Growth learnt
    # from the idle origins is a factor of hundreds in log space; before max_growth it put
    # the burst's forecast at thousands (bayes scaled to 277 replicas for <= 30 requests/s)
    y = np.array([0.8, 0, 3.4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1.9, 11.5, 4.1, 17.9])
    capped = growth(num_samples=256, season_s=0.0, extra_steps=0).forecast(y, 0.0, 15.0, 3)
    assert capped.samples.max() <= 2.0 * y.max() + 1e-9
    assert capped.samples.max() == pytest.approx(2.0 * y.max())  # the tail reaches the cap
    free = growth(num_samples=256, season_s=0.0, extra_steps=0, max_growth=0.0)
    assert free.forecast(y, 0.0, 15.0, 3).samples.max() > 100.0 * y.max()
    with pytest.raises(ConfigError, match="max_growth"):
        growth(max_growth=-1.0)


def test_growth_bootstrap_joint_paths_share_one_origin():
    # two series that always move in opposite directions: every sampled path must too
    rng = np.random.default_rng(0)
    a = np.cumsum(rng.normal(size=300))
    y = np.column_stack([a, -a]) + 100.0
    f = growth(num_samples=64, space="linear", season_s=0.0, extra_steps=0)
    out = f.forecast(y, 0.0, 1.0, 5)
    inc = out.samples - y[-1][None, None, :]
    np.testing.assert_allclose(inc[..., 0], -inc[..., 1], atol=1e-9)


def test_growth_bootstrap_reads_history_only_and_is_seeded():
    y = np.sin(np.arange(500) / 10.0) + 2.0
    a = growth(seed=3).forecast(y, 0.0, 1.0, 4).samples
    b = growth(seed=3).forecast(y.copy(), 0.0, 1.0, 4).samples
    np.testing.assert_array_equal(a, b)
    y2 = y.copy()
    growth().forecast(y2, 0.0, 1.0, 4)
    np.testing.assert_array_equal(y, y2)  # the history is not modified


def test_analog_offset_decay_respects_past_joint_levels():
    # two servers alternate 100 W / 500 W in antiphase: their sum is always 600 W. With the
    # analog's own future (offset fading fast), forecasts keep the sum near 600 W.
    t = np.arange(400)
    s0 = np.where((t // 5) % 2 == 0, 100.0, 500.0)
    y = np.column_stack([s0, 600.0 - s0])
    f = growth(space="linear", season_s=0.0, offset_decay=0.0, num_samples=64, extra_steps=0)
    row = f.forecast(y, 0.0, 1.0, 10).samples.sum(axis=2)
    np.testing.assert_allclose(row, 600.0)


def test_bad_parameters_are_config_errors_naming_them():
    with pytest.raises(ConfigError, match="space"):
        growth(space="cubic")
    with pytest.raises(ConfigError, match="offset_decay"):
        growth(offset_decay=1.5)
    with pytest.raises(ConfigError, match="max_age"):
        counts(max_age=0)
    with pytest.raises(ConfigError, match="not an online model"):
        online_predictor("window-mean")


# --------------------------------------------------------------------------- intermittent count


def test_intermittent_model_resets_on_a_new_history():
    f = counts(num_samples=10)
    h = np.zeros((30, 2))
    h[::3, 0] = 1.0
    f.forecast(h[:20], 0.0, 60.0, 1)
    assert f.stats.t == 20
    f.forecast(h[:21], 0.0, 60.0, 1)  # extends: folds one row
    assert f.stats.t == 21
    f.forecast(np.ones((5, 2)), 0.0, 60.0, 1)  # not an extension: starts over
    assert f.stats.t == 5 and f.stats.n_act.tolist() == [5.0, 5.0]
    f.reset()
    assert f.stats is None and f.state_dict()["t"] == 0


def test_intermittent_model_multi_step_paths_chain_the_hazard():
    f = counts(num_samples=400, seed=1, age_smooth=0.0)
    h = np.zeros((200, 1))
    h[::4, 0] = 1.0  # every 4th step
    out = f.forecast(h[:197], 0.0, 60.0, 4)  # last active at 196, age 0: next active in 3 steps
    frac = (out.samples[:, :, 0] > 0).mean(axis=0)
    assert frac[3] > 0.8 and frac[:3].max() < 0.2


def test_hazard_after_one_gap_is_shrunk_not_certain():
    # one arrival 5 steps after the first: hazard at age 4 is between prior and 1
    f = counts(prior_k=2.0)
    hist = np.zeros((12, 1))
    hist[0, 0] = hist[5, 0] = 1.0
    f.forecast(hist[:10], 0.0, 60.0, 1)  # age now 4 (steps 6..9 idle)
    h = float(f.hazard()[0])
    assert 0.3 < h < 1.0
    # ages never reached get the entity's tail hazard: smaller
    f2 = counts(prior_k=2.0)
    f2.forecast(hist[:8], 0.0, 60.0, 1)  # age 2
    assert float(f2.hazard()[0]) < h


def test_stratified_samples_resolve_small_probabilities():
    f = counts(num_samples=100)
    hist = np.zeros((500, 1))
    hist[::50, 0] = 2.0  # active 1 step in 50, with 2 instances
    out = f.forecast(hist[:480], 0.0, 60.0, 1)  # age 29: mid-gap, hazard small but not zero
    p = float(f.hazard()[0])
    active = out.samples[:, 0, 0] > 0
    # exactly the top round(p * S) samples are active, all with the observed count 2
    assert active.sum() == int(np.floor(p * 100 + 0.5))
    assert np.all(out.samples[active, 0, 0] == 2.0)
    assert np.all(np.diff(out.samples[:, 0, 0]) >= 0)  # monotone in the sample index


# --------------------------------------------------------------------------- state


def _sparse_counts(t_len=400, seed=3):
    rng = np.random.default_rng(seed)
    return ((rng.random((t_len, 3)) < [0.05, 0.4, 0.9]) * rng.integers(1, 5, (t_len, 3))
            ).astype(float)


@pytest.mark.parametrize("name", ["intermittent-count", "growth-bootstrap"])
def test_state_is_plain_json_and_continues_exactly_mid_stream(name):
    """Stopped mid-stream, the state through ``json`` alone (no codec: lists and strings)
    gives a new predictor the very forecasts the uninterrupted one makes from then on."""
    hist = _sparse_counts()
    horizon = 3
    whole = online_predictor(name, seed=1)
    for t in range(50, 200, 3):
        whole.forecast(hist[:t], 60.0 * t, 60.0, horizon)
    from models.base import _jsonable

    text = json.dumps(_jsonable(whole.state_dict()), allow_nan=False)  # plain JSON
    resumed = online_predictor(name, seed=1)
    resumed.load_state_dict(json.loads(text))
    for t in range(200, 400, 3):
        a = whole.forecast(hist[:t], 60.0 * t, 60.0, horizon).samples
        b = resumed.forecast(hist[:t], 60.0 * t, 60.0, horizon).samples
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["intermittent-count", "growth-bootstrap"])
def test_a_saved_predictor_carries_its_online_state(name, tmp_path):
    hist = _sparse_counts()
    est = get_estimator(name, context_length=24, prediction_length=2, seed=2)
    pred = est.fit(Series(hist[:100, :1], 60.0 * np.arange(100), ("demand",), "f", 60.0))
    pred.forecast(hist[:150], 9000.0, 60.0, 2)  # mid-stream
    pred.save(tmp_path / "p")
    back = Predictor.load(tmp_path / "p")
    assert back == pred and (tmp_path / "p" / "online_state.json").exists()
    np.testing.assert_array_equal(back.forecast(hist[:151], 9060.0, 60.0, 2).samples,
                                  pred.forecast(hist[:151], 9060.0, 60.0, 2).samples)
    assert back != online_predictor(name, seed=2)  # a fresh stream is another state


def test_windows_are_independent_of_the_online_stream():
    """``predict_windows`` reads each window as a history of its own: the online state is
    neither used nor changed, so scoring a model mid-stream does not disturb it."""
    hist = _sparse_counts()
    pred = get_estimator("intermittent-count", context_length=48, prediction_length=2,
                         num_samples=200).fit(
        Series(hist[:100, :1], 60.0 * np.arange(100), ("demand",), "f", 60.0))
    x = hist[None, 100:148, :1]
    t = 60.0 * np.arange(100, 150)[None]
    before = pred.predict_windows(x, t)[0].samples
    pred.forecast(hist[:300], 18000.0, 60.0, 2)
    state = json.dumps(pred.state_dict()["t"])
    after = pred.predict_windows(x, t)[0].samples
    np.testing.assert_array_equal(before, after)
    assert json.dumps(pred.state_dict()["t"]) == state


def test_a_calibrated_online_model_widens_its_online_forecasts_too():
    y = 50 + 10 * np.sin(np.arange(600) / 20.0)
    plain, wide = growth(seed=5, extra_steps=0), growth(seed=5, extra_steps=0)
    wide.calibration = np.array([2.0])  # as Estimator.fit(calibrate=True) may set it
    a = plain.forecast(y, 0.0, 60.0, 3).samples
    b = wide.forecast(y, 0.0, 60.0, 3).samples
    np.testing.assert_allclose(b - b.mean(axis=0), 2.0 * (a - a.mean(axis=0)))


# --------------------------------------------------------------------------- grouped analogs


def test_correlated_groups_link_series_whose_step_changes_move_together():
    from models.growth_bootstrap import correlated_groups

    a = np.array([0.0, 1.0, 3.0, 2.0, 5.0, 4.0])
    b = 2.0 * a + 7.0  # the same changes, doubled: correlation 1
    # changes of c: [0, 1, 0, -1, 0] against a's [1, 2, -1, 3, -1] (centred on 0.8):
    # covariance 1.2 - 2.2 = -1 < 0, below any positive threshold
    c = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    d = np.full(6, 3.0)  # never changes: a group of its own
    groups = correlated_groups(np.column_stack([a, c, b, d]), 0.5)
    assert groups.tolist() == [0, 1, 0, 2]
    # a threshold above every correlation leaves each series alone
    assert correlated_groups(np.column_stack([a, c, b, d]), 1.01).tolist() == [0, 1, 2, 3]


def test_grouped_analogs_keep_synchronous_servers_joint():
    # two servers of one job: b is a plus 100 W at every step, so every grouped path keeps it
    rng = np.random.default_rng(4)
    a = 100.0 + 400.0 * rng.integers(0, 2, size=300)
    hist = np.column_stack([a, a + 100.0])
    fc = growth(num_samples=64, space="linear", season_s=0.0, neighbours=0.2, min_pool=5,
                offset_decay=0.0, group_corr=0.5, seed=1).forecast(hist, 300.0, 1.0, 2)
    np.testing.assert_allclose(fc.samples[..., 1] - fc.samples[..., 0], 100.0)
    assert fc.info["pool"] == "analog"  # one group: the joint pool


def test_independent_groups_reach_row_levels_one_origin_per_path_cannot():
    # a and b are never high together in the past (b = high exactly when a is low), and their
    # changes are perfectly anti-correlated (< 0.5): two groups. One origin per path keeps
    # the row at 600 W in every path; a separate origin per group also draws both high at
    # once (1000 W), an upper tail no joint resample of the past can show.
    rng = np.random.default_rng(5)
    on = rng.integers(0, 2, size=400).astype(bool)
    hist = np.column_stack([np.where(on, 500.0, 100.0), np.where(on, 100.0, 500.0)])
    kw = dict(num_samples=256, space="linear", season_s=0.0, neighbours=0.2, min_pool=5,
              offset_decay=0.0, seed=2)
    joint = growth(**kw).forecast(hist, 400.0, 1.0, 1).samples.sum(axis=2)  # (S, H)
    grouped = growth(group_corr=0.5, **kw).forecast(hist, 400.0, 1.0, 1).samples.sum(axis=2)
    np.testing.assert_allclose(joint, 600.0)
    assert (grouped > 900.0).mean() > 0.1
    assert set(np.unique(np.round(grouped))) <= {200.0, 600.0, 1000.0}
    assert grouped.shape == joint.shape


def test_group_corr_out_of_range_is_refused():
    with pytest.raises(ConfigError, match="group_corr"):
        growth(group_corr=1.5)
