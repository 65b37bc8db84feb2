"""``bayes`` for vm: chance-constrained replicas, learnt risk, hysteresis, fallback, purity."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from models.forecast import Forecast
from policies import registry
from policies.bayes_vm import BayesVM
from tests.policies.conftest import vm_inputs

NOW = 10_000.0


def inputs(demand=(50.0,), *, capacity=7.0, ready=20, replicas=20, boot_s=60.0,
           start_s=None):
    """A vm service on 300 s samples; by default the forecasts' step 0 (``NOW``) is the
    first sample not yet observed, as a forecaster fed the observed samples gives."""
    d = np.asarray(demand, dtype=float)
    if start_s is None:
        start_s = NOW - len(d) * 300.0
    return vm_inputs(d, ready=ready, replicas=replicas, capacity=capacity, lo=1, hi=100,
                     step_s=300.0, boot_s=boot_s, sync_s=15.0, start_s=start_s)


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
    d = quiet(target_violation=0.05).decide(*inputs(), fc, NOW)
    assert d.valid and not d.fallback
    assert d.action == {"replicas": 14}  # ceil(95 / 7)
    assert d.details["quantile"] == pytest.approx(0.95)
    assert d.details["p_violation"] == pytest.approx(0.02)
    assert d.details["expected_cost"] == pytest.approx(14 * 15.0)  # replica-seconds to next sync
    assert "14 replicas" in d.why and "P(demand > capacity)" in d.why
    assert quiet(target_violation=0.2).decide(*inputs(), fc, NOW).action == {"replicas": 12}


def test_window_uses_per_path_maximum_over_covered_steps():
    # two steps: the second begins at NOW+300; with now = NOW+250, boot 60 reaches into it
    paths = np.zeros((10, 2, 1))
    paths[:, 0, 0] = 10.0
    paths[:, 1, 0] = 70.0
    fc = Forecast(samples=paths, start=NOW, step=300.0, indicators=("d",), model="hand")
    d = quiet().decide(*inputs(capacity=10.0), fc, NOW + 250.0)
    assert d.action["replicas"] == 7
    # early in the step only step 0 is covered
    assert quiet().decide(*inputs(capacity=10.0), fc, NOW).action["replicas"] == 1


def test_window_aligned_to_demand_grid():
    # grid: sample j covers [j*300, (j+1)*300) from start_s=0; 33 samples observed -> step 0 of
    # the forecast is sample 33 = [9900, 10200). At now=10180, boot 60 reaches sample 34.
    paths = np.zeros((10, 2, 1))
    paths[:, 0, 0] = 10.0
    paths[:, 1, 0] = 70.0
    fc = Forecast(samples=paths, start=10180.0, step=300.0, indicators=("d",), model="hand")
    sp = inputs(capacity=10.0, demand=np.full(33, 5.0), start_s=0.0)
    assert quiet().decide(*sp, fc, 10180.0).action["replicas"] == 7


def test_scale_down_keeps_capacity_needed_before_new_replicas_could_return():
    # demand high now (step 0), low once new replicas would be ready: with boot 600 s the
    # ready window and the whole window differ; current 9 replicas are kept (not cut to 1)
    paths = np.zeros((10, 3, 1))
    paths[:, 0, 0] = 60.0
    paths[:, 1:, 0] = 5.0
    fc = Forecast(samples=paths, start=NOW, step=300.0, indicators=("d",), model="hand")
    sp = inputs(capacity=10.0, replicas=9, ready=9, boot_s=600.0)
    d = quiet().decide(*sp, fc, NOW)
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
    for _ in range(10):  # the demand grows from a fixed start, one new sample per decision
        d = pol.decide(*inputs(hist, start_s=0.0), fc, NOW, memory=state)
        q0 = d.details["quantile"] if q0 is None else q0
        state = d.state
        hist = hist + [200.0]
    assert d.details["quantile"] > q0 > 0.98
    assert d.details["realised_violation_mean"] > 0.01
    q_hot = d.details["quantile"]
    # then a long clean run brings the quantile back down, below the target's
    for _ in range(1500):
        d = pol.decide(*inputs(hist, start_s=0.0), fc, NOW, memory=state)
        state = d.state
        hist = hist + [10.0]
    assert d.details["quantile"] < 0.99 < q_hot
    # a decision with no new sample adds no evidence
    again = pol.decide(*inputs(hist[:-1], start_s=0.0), fc, NOW, memory=state)
    assert again.state["risk"] == state["risk"]


def test_scale_down_hysteresis_and_rate_limit():
    pol = BayesVM(learn_risk=False, objective="quantile", scale_down_window_s=300.0,
                  max_scale_down_ratio=0.5, max_scale_down_abs=1)
    # one path of the low forecast in 100 still reaches 140: the 99 % quantile says 1 replica,
    # but not every path fits in fewer than 20, so the hysteresis holds
    high, low = forecast(np.full(100, 140.0)), forecast(np.r_[np.full(99, 7.0), 140.0])
    d1 = pol.decide(*inputs(replicas=20, ready=20), high, NOW)
    assert d1.action["replicas"] == 20
    # demand collapses: within the window the earlier recommendation (20) holds
    d2 = pol.decide(*inputs(replicas=20, ready=20), low, NOW + 100.0, memory=d1.state)
    assert d2.action["replicas"] == 20 and d2.details["raw_replicas"] == 1
    # after the window, at most half is removed per decision
    d3 = pol.decide(*inputs(replicas=20, ready=20), low, NOW + 401.0, memory=d2.state)
    assert d3.action["replicas"] == 10
    assert "hysteresis/rate limits" in d3.why
    # scale-up is immediate but bounded by max(2x... here 10x) or +4
    up = BayesVM(learn_risk=False, objective="quantile", max_scale_up_ratio=2.0,
                 max_scale_up_abs=4).decide(*inputs(replicas=3, ready=3), high, NOW)
    assert up.action["replicas"] == 7  # 3 + 4 > 2 * 3


def test_sure_scale_down_skips_hysteresis_and_rate_limit_when_every_path_fits():
    pol = BayesVM(learn_risk=False, objective="quantile", target_violation=0.05,
                  scale_down_window_s=300.0,
                  max_scale_down_ratio=0.5, max_scale_down_abs=1)
    high = forecast(np.full(100, 140.0))
    d1 = pol.decide(*inputs(replicas=20, ready=20), high, NOW)
    assert d1.action["replicas"] == 20
    # every path of the new forecast peaks at 30 or 40 over [now, now + 75 s]: 40 / 7 -> 6
    # replicas cover them all, so the window's 20 and the rate limit's 19 are skipped; the
    # 95 % quantile (30 / 7 -> 5) stays the raw count
    low = forecast(np.r_[np.full(95, 30.0), np.full(5, 40.0)])
    d2 = pol.decide(*inputs(replicas=20, ready=20), low, NOW + 100.0, memory=d1.state)
    assert d2.details["raw_replicas"] == 5
    assert d2.details["replicas_every_path"] == 6
    assert d2.action["replicas"] == 6 and d2.details["sure_scale_down"]
    assert "every forecast path fits in 6" in d2.why
    # the window's older 20 is spent (not a scale-up back to 20), the raw count stays in it:
    # the next wide forecast (raw 1) is held at 6 by it
    wide = forecast(np.r_[np.full(95, 7.0), np.full(5, 140.0)])
    d3 = pol.decide(*inputs(replicas=6, ready=6), wide, NOW + 115.0, memory=d2.state)
    assert d3.action["replicas"] == 6 and not d3.details["sure_scale_down"]
    # switched off, the same forecast is held by the window as before
    off = BayesVM(learn_risk=False, objective="quantile", target_violation=0.05,
                  scale_down_window_s=300.0,
                  max_scale_down_ratio=0.5, max_scale_down_abs=1, sure_scale_down=False)
    e1 = off.decide(*inputs(replicas=20, ready=20), high, NOW)
    e2 = off.decide(*inputs(replicas=20, ready=20), low, NOW + 100.0, memory=e1.state)
    assert e2.action["replicas"] == 20 and not e2.details["sure_scale_down"]


def test_sure_scale_down_never_goes_below_the_whole_window_or_scales_up():
    # step 0 (now, before new replicas could return) peaks at 60 on every path, then 5:
    # every path fits in 6 over the whole window, which is where the decision stops
    paths = np.zeros((10, 3, 1))
    paths[:, 0, 0] = 60.0
    paths[:, 1:, 0] = 5.0
    fc = Forecast(samples=paths, start=NOW, step=300.0, indicators=("d",), model="hand")
    pol = BayesVM(learn_risk=False, objective="quantile")  # default window and limits
    sp = inputs(capacity=10.0, replicas=9, ready=9, boot_s=600.0)
    d0 = pol.decide(*sp, forecast(np.full(10, 90.0), horizon=3), NOW)
    assert d0.action["replicas"] == 9
    d = pol.decide(*sp, fc, NOW + 15.0, memory=d0.state)
    assert d.details["replicas_ready_window"] == 1
    assert d.action["replicas"] == 6 and d.details["sure_scale_down"]
    # a rise is a rise: the rule only ever removes replicas
    up = pol.decide(*inputs(capacity=10.0, replicas=3, ready=3, boot_s=600.0),
                    forecast(np.full(10, 60.0), horizon=3), NOW)
    assert up.action["replicas"] == 6 and not up.details["sure_scale_down"]


def test_sure_scale_down_only_while_the_realised_rate_is_confidently_below_target():
    # learnt risk on: the rule is trusted only while P(realised rate > target) <= 0.1
    pol = BayesVM(objective="quantile", target_violation=0.05, scale_down_window_s=300.0)
    high = forecast(np.full(100, 140.0))
    low = forecast(np.r_[np.full(95, 30.0), np.full(5, 40.0)])  # every path fits in 6
    learner = pol.learner
    # the prior alone: Beta(1, 19) at target 5 %, P(rate > 5 %) = 0.95^19 = 0.377 > 0.1
    assert learner.prob_above_target(learner.initial()) == pytest.approx(0.95**19)
    d1 = pol.decide(*inputs(replicas=20, ready=20), high, NOW)
    d2 = pol.decide(*inputs(replicas=20, ready=20), low, NOW + 100.0, memory=d1.state)
    assert d2.action["replicas"] == 20 and not d2.details["sure_scale_down"]
    # 200 clean intervals: a ~ 1, b ~ 19 + 0.995^200-decayed 200 -> P(rate > 5 %) ~ 0
    clean = dict(d1.state, risk=learner.update(None, 0, 200))
    assert learner.prob_above_target(clean["risk"]) < 0.1
    d3 = pol.decide(*inputs(replicas=20, ready=20), low, NOW + 100.0, memory=clean)
    assert d3.action["replicas"] == 6 and d3.details["sure_scale_down"]
    # 20 violations in 200: P(rate > 5 %) near 1, the window holds again
    hot = dict(d1.state, risk=learner.update(None, 20, 200))
    d4 = pol.decide(*inputs(replicas=20, ready=20), low, NOW + 100.0, memory=hot)
    assert d4.action["replicas"] == 20 and not d4.details["sure_scale_down"]


def test_fallback_without_forecast_uses_reactive_rule():
    pol = BayesVM(scale_down_window_s=0.0, max_scale_down_ratio=1.0, max_scale_down_abs=100)
    d = pol.decide(*inputs(demand=np.array([30.0, 70.0])), None, NOW)
    assert d.fallback and d.valid
    assert d.action["replicas"] == 13  # ceil(70 * 1.3 / 7)
    assert "fallback" in d.why and "no forecast" in d.why
    # no forecast and no data: invalid, the caller keeps its setting
    d0 = pol.decide(*inputs(demand=np.array([])), None, NOW)
    assert not d0.valid and d0.fallback and d0.action["replicas"] == 20


def test_purity_inputs_unchanged_and_same_inputs_same_decision():
    pol = BayesVM()
    fc = forecast(np.arange(1.0, 101.0))
    sp, obs = inputs(demand=np.array([100.0, 150.0]))
    st = pol.decide(sp, obs, fc, NOW).state
    obs_copy, st_copy, samples = copy.deepcopy(obs), copy.deepcopy(st), fc.samples.copy()
    a = pol.decide(sp, obs, fc, NOW + 15, memory=st)
    b = pol.decide(sp, obs, fc, NOW + 15, memory=st)
    assert a == b
    np.testing.assert_array_equal(fc.samples, samples)
    assert st == st_copy
    np.testing.assert_array_equal(obs.demand, obs_copy.demand)
    assert (obs.ready, obs.replicas, obs.start_s) == (obs_copy.ready, obs_copy.replicas,
                                                      obs_copy.start_s)


def test_a_sliding_history_window_still_counts_each_new_sample_once():
    """The daemon hands a fixed number of buckets; the risk must keep learning from them."""
    from policies.bayes_vm import observed_violations

    step = 15.0
    demand = np.full(240, 10.0)
    demand[-2:] = 50.0  # two new samples above ready capacity
    spec, obs = vm_inputs(demand, start_s=1000.0 + 2 * step, step_s=step, ready=1)
    # last time the window started two samples earlier and ended two samples ago
    memory = {"n_seen": 240, "seen_until_s": 1000.0 + 240 * step}
    assert observed_violations(spec, obs, memory, capacity=20.0) == (2, 2)
    # nothing new since: nothing counted
    memory = {"n_seen": 240, "seen_until_s": 1000.0 + 242 * step}
    assert observed_violations(spec, obs, memory, capacity=20.0) == (0, 0)
