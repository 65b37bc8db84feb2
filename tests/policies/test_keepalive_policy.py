"""Fixed keep-alive: window semantics of the documented rule w_t = max(c_{t-1..t-K})."""

from __future__ import annotations

import numpy as np
import pytest

from policies import registry
from tests.policies.conftest import serverless_inputs
from traces.replay.serverless import ServerlessScenario, build_frame


def _inputs(history):
    """One function whose concurrency so far is ``history`` (one value per minute)."""
    return serverless_inputs(np.asarray(history).reshape(len(history), 1))  # (t, F=1)


def test_defaults_and_sweep_are_documented():
    assert registry.create("keepalive-10m", "serverless").params == {"keepalive_min": 10}
    assert registry.create("keepalive-20m", "serverless").params == {"keepalive_min": 20}
    cls = registry.get("keepalive-10m", "serverless")
    assert cls.sweep_param == "keepalive_min"
    assert cls.sweep_grid == (1, 2, 5, 10, 20, 30, 60)


def test_instance_is_warm_exactly_k_minutes_after_last_busy_minute():
    pol = registry.create("keepalive-10m", "serverless")
    busy_then_idle = [3] + [0] * 9  # busy at t=0, decide at t=10: 10 minutes later
    assert pol.decide(*_inputs(busy_then_idle), None, 600.0).action["warm"][0] == 3
    # one minute more and it is gone
    out = pol.decide(*_inputs(busy_then_idle + [0]), None, 660.0)
    assert out.action["warm"][0] == 0


def test_warm_is_the_peak_of_the_window_not_the_last_value():
    pol = registry.create("keepalive-20m", "serverless", keepalive_min=3)
    assert pol.decide(*_inputs([9, 5, 1, 2]), None, 0.0).action["warm"][0] == 5
    assert pol.decide(*_inputs([]), None, 0.0).action["warm"][0] == 0  # w_0 = 0


def test_end_to_end_idle_gap_of_k_and_k_plus_one_minutes():
    # invocations at minutes 0, 10 (gap 10 -> warm), 21 (gap 11 -> cold)
    inv = np.zeros((22, 1))
    inv[[0, 10, 21], 0] = 1
    sc = ServerlessScenario()
    data = sc.prepare(build_frame(inv, [500.0], [100.0]))
    res = sc.run(registry.create("keepalive-10m", "serverless"), data)
    assert res.totals["cold_starts"] == 2  # minute 0 and minute 21
    # idle warm minutes: 1..9 after minute 0 and 11..20 after minute 10 = 19 instance-min
    assert res.totals["wasted_memory_gb_s"] == pytest.approx(19 * 100 * 60 / 1024)


@pytest.mark.parametrize("bad", [0, -5, "ten"])
def test_bad_keepalive_is_refused(bad):
    with pytest.raises(ValueError, match="keepalive_min"):
        registry.create("keepalive-10m", "serverless", keepalive_min=bad)
