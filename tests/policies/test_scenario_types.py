"""What the typed contracts derive for policies: the same numbers, given or computed."""

from __future__ import annotations

import numpy as np
import pytest

from policies.scenarios import power, vm
from tests.policies.conftest import power_inputs, vm_inputs


def test_vm_window_mean_from_running_sums_or_computed_is_the_same():
    d = np.array([100.0] * 10 + [1.6] * 15)
    _, kept = vm_inputs(d)  # the replay hands its running sums
    _, bare = vm_inputs(d, cumsum=False)  # the daemon does not: computed on first use
    for seconds in (0.2, 1.0, 15.0, 25.0, 1000.0):
        assert kept.window_mean(seconds, 1.0) == bare.window_mean(seconds, 1.0)
    assert kept.window_mean(25.0, 1.0) == pytest.approx((1000 + 24) / 25)
    assert kept.window_mean(1000.0, 1.0) == pytest.approx((1000 + 24) / 25)  # clipped to T
    np.testing.assert_array_equal(bare.cumsum, kept.demand_cumsum)
    assert bare.cumsum is bare.cumsum  # computed once


def test_vm_no_demand_is_no_data():
    _, obs = vm_inputs([], cumsum=False)
    assert obs.window_mean(15.0, 1.0) is None and obs.latest_demand() is None
    _, obs = vm_inputs([3.0, np.nan])
    assert obs.latest_demand() is None  # a missing sample is not a demand


def test_power_row_power_given_or_summed_and_priority_derived():
    spec, obs = power_inputs([300.0, 250.0, 100.0], caps_w=[np.inf, 200.0, np.inf])
    assert obs.row_power_w == 650.0 and obs.row.tolist() == [650.0]
    np.testing.assert_array_equal(obs.server_power_w, [300.0, 250.0, 100.0])
    assert obs.capped.tolist() == [False, True, False]
    given = power.Observation(t=1, history=obs.history, caps_w=obs.caps_w, start_s=0.0,
                              row_w=np.array([640.0]))
    assert given.row_power_w == 640.0  # the caller's row power wins
    assert spec.priority.tolist() == [0.0, 0.0, 1.0] and not spec.priority.flags.writeable
    _, empty = power_inputs(None)
    assert empty.row_power_w == 0.0 and empty.server_power_w.tolist() == [0.0, 0.0, 0.0]


def test_the_types_are_frozen():
    spec, obs = vm_inputs([1.0])
    with pytest.raises(AttributeError):
        spec.capacity = 2.0
    with pytest.raises(AttributeError):
        obs.ready = 3
    assert isinstance(obs, vm.Observation)
