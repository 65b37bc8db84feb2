"""Knative KPA behaviours (windows, panic mode, rate limits), with hand-computed numbers."""

from __future__ import annotations

from policies import registry
from tests.policies.conftest import vm_inputs


def inputs(samples, ready, capacity=10.0, lo=1, hi=1000):
    return vm_inputs(samples, ready=ready, capacity=capacity, lo=lo, hi=hi)


def kpa(**kw):
    return registry.create("kpa", "vm", **kw)


def test_documented_defaults():
    p = kpa().params
    assert (p["target_util"], p["stable_window_s"], p["panic_window_pct"]) == (0.7, 60, 10)
    assert (p["panic_threshold"], p["max_scale_up_rate"], p["max_scale_down_rate"]) == (
        2.0, 1000, 2)
    assert p["sync_s"] == 2.0


def test_stable_mode_uses_the_60_second_average():
    # capacity 10, target 70 % -> 7 per replica; 60 s at 70 -> ceil(70/7) = 10
    d = kpa().decide(*inputs([70.0] * 60, 10), None, 0.0)
    assert d.valid and d.action == {"replicas": 10} and not d.details["panic"]
    # older samples fall out of the window: 30 s at 700 then 60 s at 70 -> still 10
    d = kpa().decide(*inputs([700.0] * 30 + [70.0] * 60, 10), None, 0.0)
    assert d.action == {"replicas": 10}


def test_panic_starts_when_panic_pods_double_ready():
    # ready 2; last 6 s at 28, 54 s at 0: stable 28*6/60 = 2.8 -> dspc 1;
    # panic 28 -> dppc ceil(28/7) = 4 = 2 x ready -> panic, desired max(1, 4) = 4
    s = inputs([0.0] * 54 + [28.0] * 6, 2)
    d = kpa().decide(*s, None, 100.0)
    assert d.details["panic"] and d.action == {"replicas": 4}
    assert d.state == (100.0, 4)
    # just under the threshold (dppc 3 < 4): no panic, stable count -> max(1, floor(2/2))
    d = kpa().decide(*inputs([0.0] * 54 + [21.0] * 6, 2), None, 100.0)
    assert not d.details["panic"] and d.action == {"replicas": 1}


def test_panic_never_scales_down_and_ends_after_a_stable_window():
    p = kpa()
    state = (100.0, 4)  # panicking since t=100 with 4 replicas requested
    calm = inputs([7.0] * 60, 4)  # stable 7 -> 1 replica; panic 7 -> 1 (< 2 x 4)
    d = p.decide(*calm, None, 130.0, memory=state)
    assert d.details["panic"] and d.action == {"replicas": 4}
    d = p.decide(*calm, None, 160.0, memory=state)  # 100 + 60 is not before 160: still panic
    assert d.details["panic"] and d.action == {"replicas": 4}
    d = p.decide(*calm, None, 161.0, memory=state)  # panic over -> stable 1, rate floor(4/2) = 2
    assert not d.details["panic"] and d.action == {"replicas": 2} and d.state == (None, 0)


def test_panic_keeps_the_highest_count_and_extends():
    p = kpa()
    s = inputs([0.0] * 54 + [56.0] * 6, 4)  # dppc 8 = 2 x 4 -> panic extends, 8 > 4
    d = p.decide(*s, None, 150.0, memory=(100.0, 4))
    assert d.action == {"replicas": 8} and d.state == (150.0, 8)


def test_rate_limits():
    # no load with 10 ready: at most halve per decision
    assert kpa().decide(*inputs([0.0] * 60, 10), None, 0.0).action == {"replicas": 5}
    # scale-up rate 2 caps 1 ready at ceil(2 * 1) = 2
    d = kpa(max_scale_up_rate=2.0).decide(*inputs([700.0] * 60, 1), None, 0.0)
    assert d.action == {"replicas": 2}
    # ready 0 counts as 1 for the limits
    d = kpa().decide(*inputs([0.0] * 60, 0), None, 0.0)
    assert d.action == {"replicas": 1}


def test_target_util_is_the_knob_and_bounds_apply():
    d = kpa(target_util=0.5).decide(*inputs([70.0] * 60, 14), None, 0.0)
    assert d.action == {"replicas": 14}  # 70 / (10 * 0.5)
    d = kpa().decide(*inputs([700.0] * 60, 100, hi=50), None, 0.0)
    assert d.action == {"replicas": 50}


def test_no_data_is_invalid():
    d = kpa().decide(*inputs([], 3), None, 0.0)
    assert not d.valid and d.action == {"replicas": 3}
