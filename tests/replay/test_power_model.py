"""The power reference model on a hand-computed 3-server row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.errors import ConfigError, InputError
from policies import registry
from policies.power_oracle import waterfill
from traces.replay.base import get_scenario
from traces.replay.power import PowerScenario, build_frame, low_priority_mask

# two machines, cpu_util %, 4 one-minute steps; P = 100 + u/100 * 200 W
UTIL = np.array([[100, 50], [100, 100], [50, 100], [0, 0]], dtype=float)
# m0 -> 300 300 200 100 W; m1 -> 200 300 300 100 W. A row of 3 servers with a budget for 2
# (600 W): server 2 replays m0 shifted by T // ceil(3/2) = 2 steps -> 200 100 300 300 W.
DEMAND = np.array([[300, 200, 200], [300, 300, 100], [200, 300, 300], [100, 100, 300]])
LOW = [False, True, False]  # share 0.5: every other server, starting with the second
DEMANDED_J = DEMAND.sum() * 60.0  # 2,700 W-steps x 60 s


def _run(policy, timeline=False, **opts):
    sc = PowerScenario(servers=3, **opts)
    data = sc.prepare(build_frame(UTIL, step_s=60.0))
    return data, sc.run(registry.create(policy, "power"), data, timeline=timeline)


def test_prepare_builds_the_row_by_hand():
    data, _ = _run("static-peak")
    np.testing.assert_allclose(data.demand_w, DEMAND)
    np.testing.assert_array_equal(data.low_priority, LOW)
    assert data.budget_w == 600.0 and data.budget_servers == 2
    assert data.server_ids[2] == "s002:m0+2"
    assert data.resolved["align"] == "time"


def test_static_peak_hosts_only_the_budgeted_servers():
    _, res = _run("static-peak")
    t = res.totals
    assert t["servers"] == 2
    assert t["breach_steps"] == 0 and t["performance_lost"] == 0 and t["capped_fraction"] == 0


def test_oracle_removes_exactly_the_excess_low_priority_first():
    _, res = _run("oracle", timeline=True)
    t = res.totals
    # excess 100, 100, 200, 0 W, all taken from server 1 (low priority)
    assert t["servers"] == 3 and t["breach_steps"] == 0
    assert t["demand_breach_steps"] == 3
    assert t["performance_lost"] == pytest.approx(400 * 60 / DEMANDED_J)
    assert t["performance_lost_low"] == pytest.approx(400 / 900)
    assert t["performance_lost_high"] == 0
    assert t["capped_fraction"] == pytest.approx(3 / 12)
    np.testing.assert_allclose(res.timeline["row_power_kw"], [0.6, 0.6, 0.6, 0.5])


def test_polca_without_delay_by_hand():
    _, res = _run("polca", delay_s=0.0, timeline=True)
    # t0: no telemetry yet -> 700 W (breach); t1: 700/600 >= 100 % -> brake, all at 150 W
    # -> 150+150+100 = 400; t2: 400/600 = 67 % releases everything -> 800 (breach);
    # t3: brake again -> 100+100+150 = 350
    t = res.totals
    assert t["breach_steps"] == 2
    assert t["capped_fraction"] == pytest.approx(6 / 12)
    assert t["performance_lost"] == pytest.approx((300 + 150) * 60 / DEMANDED_J)
    np.testing.assert_allclose(res.timeline["row_power_kw"], [0.7, 0.4, 0.8, 0.35])
    np.testing.assert_allclose(res.timeline["caps_active"], [0, 3, 0, 3])


def test_polca_with_half_step_actuation_delay_by_hand():
    _, res = _run("polca", delay_s=30.0, timeline=True)
    # t1: brake decided, first 30 s uncapped (700 W: breach), then 400 W -> 550 average
    # t2: 550/600 = 91.7 % -> level 2 (low 180 W, high 255 W); first half still braked
    #     (450 W), second half 200+180+255 = 635 W > 600 (breach) -> 542.5 average
    # t3: 542.5/600 = 90.4 % -> stays level 2: 100+100+255 = 455 W
    t = res.totals
    assert t["breach_steps"] == 3
    np.testing.assert_allclose(res.timeline["row_power_kw"], [0.7, 0.55, 0.5425, 0.455])
    np.testing.assert_allclose(res.timeline["caps_active"], [0, 1.5, 3, 3])
    assert t["capped_fraction"] == pytest.approx(7.5 / 12)
    assert t["performance_lost"] == pytest.approx((150 + 257.5 + 45) * 60 / DEMANDED_J)


def test_power_w_series_and_default_nameplate():
    watts = np.array([[250.0, 410.2], [330.0, 120.0]])
    sc = PowerScenario()
    data = sc.prepare(build_frame(watts, metric="power_w", step_s=1.0))
    assert data.p_max_w == 411.0  # highest power, rounded up
    assert data.budget_w == 2 * 411.0
    assert data.demand_w.shape == (2, 3)  # round(1.3 * 2) = 3 servers
    assert data.resolved["metric"] == "power_w"


def test_series_with_different_starts_align_on_their_own_start():
    a = pd.DataFrame({"entity": "run1/gpu0", "metric": "power_w",
                      "ts": [0.0, 1.0, 2.0, 3.0], "value": [1.0, 2.0, 3.0, 4.0]})
    b = pd.DataFrame({"entity": "run2/gpu0", "metric": "power_w",
                      "ts": [500.0, 501.0, 502.0], "value": [7.0, 8.0, 9.0]})
    frame = pd.concat([a, b], ignore_index=True)
    frame.attrs["step"] = 1.0
    data = PowerScenario(p_max_w=10.0, p_idle_w=0.0, servers=2).prepare(frame)
    assert data.resolved["align"] == "start"
    np.testing.assert_allclose(data.demand_w, [[1, 7], [2, 8], [3, 9]])


def test_a_late_series_idles_before_its_first_sample_on_one_clock():
    full = [{"entity": f"vm{i}", "metric": "cpu_util", "ts": 60.0 * t, "value": 50.0}
            for i in range(2) for t in range(5)]
    late = [{"entity": "vm2", "metric": "cpu_util", "ts": 60.0 * t, "value": 100.0}
            for t in (3, 4)]
    frame = pd.DataFrame(full + late)
    frame.attrs["step"] = 60.0
    data = PowerScenario(servers=3).prepare(frame)
    assert data.resolved["align"] == "time"  # 2 of 3 series cover the whole span
    assert data.resolved["idle_outside_span_steps"] == 3
    np.testing.assert_allclose(data.demand_w[:, 2], [100, 100, 100, 300, 300])
    np.testing.assert_allclose(data.demand_w[:, 0], [200] * 5)


def test_low_priority_mask_is_evenly_interleaved():
    np.testing.assert_array_equal(low_priority_mask(4, 0.5), [False, True, False, True])
    np.testing.assert_array_equal(np.flatnonzero(low_priority_mask(8, 0.25)), [3, 7])
    assert not low_priority_mask(5, 0.0).any() and low_priority_mask(5, 1.0).all()


def test_waterfill_by_hand():
    caps, removed = waterfill(np.array([500.0, 300.0, 200.0]), 250.0, floor=100.0)
    np.testing.assert_allclose(caps, [275.0, 275.0, np.inf])  # 225 + 25 W removed
    assert removed == 250.0
    caps, removed = waterfill(np.array([150.0, 120.0]), 500.0, floor=100.0)
    np.testing.assert_allclose(caps, [100.0, 100.0])
    assert removed == 70.0


def test_bad_inputs_and_options_are_clear():
    with pytest.raises(ConfigError, match="servers"):
        PowerScenario(servers=1).prepare(build_frame(UTIL))
    with pytest.raises(ConfigError, match="delay_s"):
        PowerScenario(delay_s=-1.0)
    with pytest.raises(ValueError, match="no option"):
        PowerScenario(budget=5)
    bad = build_frame(UTIL)
    bad["metric"] = "invocations"
    with pytest.raises(InputError, match="power_w.*cpu_util.*gpu_util"):
        PowerScenario().prepare(bad)
    irregular = build_frame(UTIL)
    irregular.attrs["step"] = None
    with pytest.raises(InputError, match="--step"):
        PowerScenario().prepare(irregular)


def test_scenario_and_policies_are_registered():
    assert get_scenario("power") is PowerScenario
    assert {"polca", "static-peak", "oracle"} <= set(registry.names("power"))
