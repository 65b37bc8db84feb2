"""Kubernetes HPA v2 behaviours, with hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from policies import registry
from tests.policies.conftest import vm_inputs


def inputs(load, ready, replicas=None, capacity=1.0, lo=1, hi=1000, n=15, demand=None):
    """A vm service whose last ``n`` one-second samples all equal ``load`` (or ``demand``)."""
    d = np.full(n, float(load)) if demand is None else demand
    return vm_inputs(d, ready=ready, replicas=replicas, capacity=capacity, lo=lo, hi=hi)


def hpa(**kw):
    return registry.create("hpa", "vm", **kw)


def test_documented_defaults():
    p = hpa().params
    assert (p["target"], p["tolerance"], p["sync_s"], p["down_window_s"]) == (0.8, 0.1, 15, 300)
    assert (p["up_percent"], p["up_pods"], p["up_period_s"]) == (100, 4, 15)
    assert (p["down_percent"], p["down_period_s"]) == (100, 15)
    assert registry.get("hpa", "vm").sweep_param == "target"


def test_tolerance_band():
    # 4 ready, target 0.8: load 3.36 -> ratio 1.05 (inside 0.1) -> hold
    d = hpa().decide(*inputs(3.36, 4), None, 0.0)
    assert d.valid and d.action == {"replicas": 4}
    # load 3.68 -> ratio 1.15 -> ceil(1.15 * 4) = ceil(4.6) = 5
    assert hpa().decide(*inputs(3.68, 4), None, 0.0).action == {"replicas": 5}
    # load 2.72 -> ratio 0.85 -> ceil(3.4) = 4 (ratio outside band, but ceil keeps 4)
    assert hpa().decide(*inputs(2.72, 4), None, 0.0).action == {"replicas": 4}
    # load 2.4 -> ratio 0.75 -> ceil(3.0) = 3
    assert hpa().decide(*inputs(2.4, 4), None, 0.0).action == {"replicas": 3}


def test_scale_up_rate_is_max_of_double_or_plus_four():
    # 2 replicas at load 40: raw ceil(40/2/0.8 * 2) = 50; limit max(2*2, 2+4) = 6
    d = hpa().decide(*inputs(40, 2), None, 0.0)
    assert d.action == {"replicas": 6} and d.details["raw"] == 50
    # 10 replicas: limit max(20, 14) = 20
    assert hpa().decide(*inputs(400, 10), None, 0.0).action == {"replicas": 20}
    # within the same 15 s period the scale-up already made counts: start = 6 - 4 = 2
    p = hpa()
    first = p.decide(*inputs(40, 2), None, 0.0)
    again = p.decide(*inputs(40, 6, 6), None, 5.0, memory=first.state)
    assert again.action == {"replicas": 6}
    later = p.decide(*inputs(40, 6, 6), None, 15.0, memory=first.state)  # the period has passed
    assert later.action == {"replicas": 12}
    # deletions within the period count back: 6 replicas after removing 4 -> start 10
    cut = ((), ((10.0, -4),))
    assert p.decide(*inputs(400, 6, 6), None, 20.0, memory=cut).action == {"replicas": 20}


def test_scale_down_waits_for_the_stabilisation_window():
    p = hpa()
    st = p.decide(*inputs(6.4, 8), None, 0.0).state  # ratio 1 -> recommendation 8
    # the load drops: raw recommendation ceil(1.28/8/0.8 * 8) = ceil(1.6) = 2, but 8 was recommended
    # less than 300 s ago -> stay at 8
    for now in (15.0, 150.0, 299.0):
        d = p.decide(*inputs(1.28, 8), None, now, memory=st)
        assert d.action == {"replicas": 8}, now
        assert d.details["raw"] == 2
        st = d.state
    d = p.decide(*inputs(1.28, 8), None, 300.0, memory=st)  # t=0 left the window (strictly after)
    assert d.action == {"replicas": 2}


def test_scale_down_rate_limit_when_configured():
    p = hpa(down_percent=50.0, down_window_s=0.0)
    d = p.decide(*inputs(0.8, 10), None, 0.0)  # raw ceil(0.1 * 10) = 1 -> limit ceil(5)
    assert d.action == {"replicas": 5}
    d2 = p.decide(*inputs(0.8, 5), None, 5.0, memory=d.state)  # same period: start = 5 + 5 = 10
    assert d2.action == {"replicas": 5}
    d3 = p.decide(*inputs(0.8, 5), None, 15.0, memory=d2.state)  # new period: int(2.5) = 2
    assert d3.action == {"replicas": 2}


def test_unready_replicas_count_as_idle_on_scale_up():
    # 2 ready + 2 booting, load 2.4: ratio 1.5 over ready, but 2.4/4/0.8 = 0.75 over all
    # -> direction reverses -> hold 4
    assert hpa().decide(*inputs(2.4, 2, 4), None, 0.0).action == {"replicas": 4}
    # load 6: 6/4/0.8 = 1.875 -> ceil(7.5) = 8, within the rate limit max(8, 8)
    assert hpa().decide(*inputs(6, 2, 4), None, 0.0).action == {"replicas": 8}


def test_bounds_and_no_data():
    assert hpa().decide(*inputs(400, 10, hi=12), None, 0.0).action == {"replicas": 12}
    assert hpa().decide(*inputs(0, 3, lo=2), None, 0.0).action == {"replicas": 2}
    # Kubernetes needs minReplicas >= 1: HPA never scales to zero
    assert hpa().decide(*inputs(0, 3, lo=0), None, 0.0).action == {"replicas": 1}
    d = hpa().decide(*inputs(1, 3, demand=np.zeros(0)), None, 0.0)
    assert not d.valid and d.action == {"replicas": 3}


def test_metric_window_averages_the_last_samples():
    s = inputs(0, 2, demand=np.array([100.0] * 10 + [1.6] * 15))  # the spike is older than 15 s
    assert hpa().decide(*s, None, 0.0).action == {"replicas": 2}  # ratio exactly 1
    assert hpa(metric_window_s=25.0).decide(*s, None, 0.0).details["load"] == \
        pytest.approx((1000 + 24) / 25)


def test_bad_target_refused():
    with pytest.raises(ValueError, match="target"):
        hpa(target=0.0)
