"""``bayes`` for vm: chance-constrained replicas, learnt risk, hysteresis, fallback, purity."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from models.forecast import Forecast
from policies import registry
from policies.bayes_vm import BayesVM

NOW = 10_000.0


def spec(**kw):
    base = {
        "capacity": 7.0, "ready": 20, "replicas": 20, "min_replicas": 1, "max_replicas": 100,
        "step_s": 300.0, "demand": np.array([50.0]), "boot_s": 60.0, "sync_s": 15.0,
    }
    base.update(kw)
    return base


def forecast(values, horizon=1):
    x = np.asarray(values, dtype=float)
    return Forecast(samples=np.repeat(x[:, None, None], horizon, axis=1), start=NOW,
                    step=300.0, indicators=("demand",), model="hand")


def quiet(**kw):
    """No learning, no hysteresis, no rate limit: the bare chance constraint."""
    p = dict(learn_risk=False, objective="quantile", scale_down_window_s=0.0,
             max_scale_down_ratio=1.0, max_scale_down_abs=1000, max_scale_up_abs=1000)
    p.update(kw)
    return BayesVM(**p)


def test_registered_for_vm_with_sweep_knob():
    cls = registry.get("bayes", "vm")
    assert cls is BayesVM and cls.needs_forecast
    assert cls.sweep_param == "target_violation" and 0.01 in cls.sweep_grid


def test_exact_replica_count_from_known_quantiles():
    fc = forecast(np.arange(1.0, 101.0))  # 100 samples 1..100
    d = quiet(target_violation=0.05).decide(spec(), None, fc, NOW)
    assert d.valid and not d.fallback
    assert d.action == {"replicas": 14}  # ceil(95 / 7)
    assert d.details["quantile"] == pytest.approx(0.95)
    assert d.details["p_violation"] == pytest.approx(0.02)
    assert d.details["expected_cost"] == pytest.approx(14 * 15.0)  # replica-seconds to next sync
    assert "14 replicas" in d.why and "P(demand > capacity)" in d.why
    assert quiet(target_violation=0.2).decide(spec(), None, fc, NOW).action == {"replicas": 12}


def test_window_uses_per_path_maximum_over_covered_steps():
    # two steps: the second begins at NOW+300; with now = NOW+250, boot 60 reaches into it
    paths = np.zeros((10, 2, 1))
    paths[:, 0, 0] = 10.0
    paths[:, 1, 0] = 70.0
    fc = Forecast(samples=paths, start=NOW, step=300.0, indicators=("d",), model="hand")
    d = quiet().decide(spec(capacity=10.0), None, fc, NOW + 250.0)
    assert d.action["replicas"] == 7
    # early in the step only step 0 is covered
    assert quiet().decide(spec(capacity=10.0), None, fc, NOW).action["replicas"] == 1


def test_window_aligned_to_demand_grid():
    # grid: sample j covers [j*300, (j+1)*300) from start_s=0; 33 samples observed -> step 0 of
    # the forecast is sample 33 = [9900, 10200). At now=10180, boot 60 reaches sample 34.
    paths = np.zeros((10, 2, 1))
    paths[:, 0, 0] = 10.0
    paths[:, 1, 0] = 70.0
    fc = Forecast(samples=paths, start=10180.0, step=300.0, indicators=("d",), model="hand")
    sp = spec(capacity=10.0, demand=np.full(33, 5.0), start_s=0.0)
    assert quiet().decide(sp, None, fc, 10180.0).action["replicas"] == 7


def test_scale_down_keeps_capacity_needed_before_new_replicas_could_return():
    # demand high now (step 0), low once new replicas would be ready: with boot 600 s the
    # ready window and the whole window differ; current 9 replicas are kept (not cut to 1)
    paths = np.zeros((10, 3, 1))
    paths[:, 0, 0] = 60.0
    paths[:, 1:, 0] = 5.0
    fc = Forecast(samples=paths, start=NOW, step=300.0, indicators=("d",), model="hand")
    sp = spec(capacity=10.0, replicas=9, ready=9, boot_s=600.0)
    d = quiet().decide(sp, None, fc, NOW)
    assert d.details["replicas_ready_window"] == 1
    assert d.details["replicas_whole_window"] == 6
    assert d.action["replicas"] == 6


def test_risk_adapts_quantile_up_after_violations_and_down_after_clean_run():
    pol = BayesVM(target_violation=0.01, objective="quantile")
    fc = forecast(np.arange(1.0, 101.0))
    # demand above ready * capacity (20 * 7 = 140) in each newly observed sample
    state = None
    hist = [200.0]
    q0 = None
    for _ in range(10):
        d = pol.decide(spec(demand=np.array(hist)), state, fc, NOW)
        q0 = d.details["quantile"] if q0 is None else q0
        state = d.state
        hist = hist + [200.0]
    assert d.details["quantile"] > q0 > 0.98
    assert d.details["realised_violation_mean"] > 0.01
    q_hot = d.details["quantile"]
    # then a long clean run brings the quantile back down, below the target's
    for _ in range(1500):
        d = pol.decide(spec(demand=np.array(hist)), state, fc, NOW)
        state = d.state
        hist = hist + [10.0]
    assert d.details["quantile"] < 0.99 < q_hot
    # a decision with no new sample adds no evidence
    again = pol.decide(spec(demand=np.array(hist[:-1])), state, fc, NOW)
    assert again.state["risk"] == state["risk"]


def test_scale_down_hysteresis_and_rate_limit():
    pol = BayesVM(learn_risk=False, objective="quantile", scale_down_window_s=300.0,
                  max_scale_down_ratio=0.5, max_scale_down_abs=1)
    high, low = forecast(np.full(100, 140.0)), forecast(np.full(100, 7.0))
    d1 = pol.decide(spec(replicas=20, ready=20), None, high, NOW)
    assert d1.action["replicas"] == 20
    # demand collapses: within the window the earlier recommendation (20) holds
    d2 = pol.decide(spec(replicas=20, ready=20), d1.state, low, NOW + 100.0)
    assert d2.action["replicas"] == 20 and d2.details["raw_replicas"] == 1
    # after the window, at most half is removed per decision
    d3 = pol.decide(spec(replicas=20, ready=20), d2.state, low, NOW + 401.0)
    assert d3.action["replicas"] == 10
    assert "hysteresis/rate limits" in d3.why
    # scale-up is immediate but bounded by max(2x... here 10x) or +4
    up = BayesVM(learn_risk=False, objective="quantile", max_scale_up_ratio=2.0,
                 max_scale_up_abs=4).decide(spec(replicas=3, ready=3), None, high, NOW)
    assert up.action["replicas"] == 7  # 3 + 4 > 2 * 3


def test_fallback_without_forecast_uses_reactive_rule():
    pol = BayesVM(scale_down_window_s=0.0, max_scale_down_ratio=1.0, max_scale_down_abs=100)
    d = pol.decide(spec(demand=np.array([30.0, 70.0])), None, None, NOW)
    assert d.fallback and d.valid
    assert d.action["replicas"] == 13  # ceil(70 * 1.3 / 7)
    assert "fallback" in d.why and "no forecast" in d.why
    # no forecast and no data: invalid, the caller keeps its setting
    d0 = pol.decide(spec(demand=np.array([])), None, None, NOW)
    assert not d0.valid and d0.fallback and d0.action["replicas"] == 20


def test_purity_inputs_unchanged_and_same_inputs_same_decision():
    pol = BayesVM()
    fc = forecast(np.arange(1.0, 101.0))
    sp = spec(demand=np.array([100.0, 150.0]))
    st = pol.decide(sp, None, fc, NOW).state
    sp_copy, st_copy, samples = copy.deepcopy(sp), copy.deepcopy(st), fc.samples.copy()
    a = pol.decide(sp, st, fc, NOW + 15)
    b = pol.decide(sp, st, fc, NOW + 15)
    assert a == b
    np.testing.assert_array_equal(fc.samples, samples)
    assert st == st_copy
    assert sp.keys() == sp_copy.keys()
    np.testing.assert_array_equal(sp["demand"], sp_copy["demand"])


def test_a_sliding_history_window_still_counts_each_new_sample_once():
    """The daemon hands a fixed number of buckets; the risk must keep learning from them."""
    from policies.bayes_vm import observed_violations

    step = 15.0
    demand = np.full(240, 10.0)
    demand[-2:] = 50.0  # two new samples above ready capacity
    spec = {"demand": demand, "start_s": 1000.0 + 2 * step, "step_s": step, "ready": 1}
    # last time the window started two samples earlier and ended two samples ago
    state = {"n_seen": 240, "seen_until_s": 1000.0 + 240 * step}
    assert observed_violations(spec, state, capacity=20.0) == (2, 2)
    # nothing new since: nothing counted
    state = {"n_seen": 240, "seen_until_s": 1000.0 + 242 * step}
    assert observed_violations(spec, state, capacity=20.0) == (0, 0)
