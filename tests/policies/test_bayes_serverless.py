"""``bayes`` for serverless: newsvendor warm pools and sparse-function arrival forecasts."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from models.forecast import Forecast
from models.online import online_predictor
from policies import registry
from policies.bayes_serverless import BayesServerless, critical_fractile
from tests.policies.conftest import serverless_inputs


def inputs(mem, history=()):
    """Functions ``f0, f1, ...`` of memory ``mem`` (MB) whose concurrency so far is ``history``."""
    return serverless_inputs(history, memory_mb=mem)


def fc(cols, names=None):
    x = np.column_stack(cols).astype(float)  # (S, F)
    names = names or tuple(f"f{i}" for i in range(x.shape[1]))
    return Forecast(samples=x[:, None, :], start=0.0, step=60.0, indicators=names, model="hand")


def test_registered_with_price_ratio_knob():
    cls = registry.get("bayes", "serverless")
    assert cls is BayesServerless and cls.needs_forecast
    assert cls.sweep_param == "cold_start_gb_s" and len(cls.sweep_grid) >= 5


def test_critical_fractile_by_hand():
    # 1024 MB for 60 s idle = 60 GB·s; a cold start worth 30 GB·s -> tau = 30 / 90
    assert critical_fractile(30.0, np.array([1024.0]), 60.0)[0] == pytest.approx(1 / 3)
    assert critical_fractile(60.0, np.array([1024.0, 512.0]), 60.0) == pytest.approx([0.5, 2 / 3])


def test_newsvendor_warm_count_from_known_distribution():
    # both functions: C uniform on 0..9. f0 has 1024 MB, f1 has 128 MB.
    c = np.repeat(np.arange(10.0), 10)
    pol = BayesServerless(cold_start_gb_s=180.0)
    d = pol.decide(*inputs([1024.0, 128.0], np.zeros((3, 2))), fc([c, c]), 60.0)
    # f0: tau = 180 / (180 + 60) = 0.75 -> least w with (w+1)/10 >= 0.75 = 7
    # f1: tau = 180 / (180 + 7.5) = 0.96 -> w = 9
    assert d.action["warm"].tolist() == [7, 9]
    assert not d.fallback and d.valid
    # expected cold starts E[(C - w)+]: f0 (1 at C=8, 2 at C=9) / 10 = 0.3; f1 0
    assert d.details["expected_cold_starts"] == pytest.approx(0.3)
    assert "newsvendor" in d.why


def test_forecast_columns_matched_by_name():
    c_busy, c_idle = np.full(100, 5.0), np.zeros(100)
    pol = BayesServerless(cold_start_gb_s=100.0)
    # indicators in the opposite order to spec.entities
    d = pol.decide(*inputs([256.0, 256.0]), fc([c_idle, c_busy], names=("f1", "f0")), 60.0)
    assert d.action["warm"].tolist() == [5, 0]


def test_sparse_function_warmed_for_its_predicted_arrival_only():
    # f0 fires every 10th step (a timer), f1 every step with 3 concurrent instances
    t_len = 300
    hist = np.zeros((t_len, 2))
    hist[::10, 0] = 1.0
    hist[:, 1] = 3.0
    pol = BayesServerless(cold_start_gb_s=50.0)

    def warm_by_phase(smooth):
        f = online_predictor("intermittent-count", num_samples=200, age_smooth=smooth).forecast
        out = {}
        for t in range(200, t_len):
            fcst = f(hist[:t], 60.0 * t, 60.0, 1)
            d = pol.decide(*inputs([256.0, 256.0], hist[:t]), fcst, 60.0 * t)
            out[t % 10] = int(d.action["warm"][0])
            assert d.action["warm"][1] == 3
        return out

    # sharp ages: warm exactly in the steps where the timer fires (t % 10 == 0)
    assert warm_by_phase(0.0) == {0: 1, **{k: 0 for k in range(1, 10)}}
    # smoothed ages tolerate a minute of jitter: the minute before is warmed as well
    assert warm_by_phase(1.0) == {0: 1, 9: 1, **{k: 0 for k in range(1, 9)}}


def test_fallback_without_forecast_is_keepalive():
    hist = np.zeros((15, 2), dtype=np.int64)
    hist[2, 0] = 4  # outside the last 10 steps
    hist[9, 0] = 2
    hist[14, 1] = 1
    pol = BayesServerless()
    d = pol.decide(*inputs([128.0, 128.0], hist), None, 900.0)
    assert d.fallback and d.valid and d.action["warm"].tolist() == [2, 1]
    assert "keep-alive" in d.why and "no forecast" in d.why
    d0 = pol.decide(*inputs([128.0, 128.0], hist[:0]), None, 0.0)
    assert d0.fallback and d0.action["warm"].tolist() == [0, 0]


def test_purity_same_inputs_same_decision_inputs_untouched():
    c = np.repeat(np.arange(10.0), 10)
    sp, obs = inputs([1024.0, 128.0], np.ones((3, 2)))
    f = fc([c, c])
    before = (copy.deepcopy(sp), copy.deepcopy(obs), f.samples.copy())
    pol = BayesServerless()
    a, b = pol.decide(sp, obs, f, 60.0), pol.decide(sp, obs, f, 60.0)
    np.testing.assert_array_equal(a.action["warm"], b.action["warm"])
    assert a.details == b.details and a.why == b.why
    np.testing.assert_array_equal(sp.memory_mb, before[0].memory_mb)
    np.testing.assert_array_equal(obs.history, before[1].history)
    np.testing.assert_array_equal(f.samples, before[2])
