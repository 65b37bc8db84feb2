"""Two promises of the replay models that a one-line change used to break unnoticed.

* vm: scale-down cancels the *newest* booting replicas first (those furthest from ready);
* power: no cap takes a running server below idle power (a cap below idle is clipped to
  ``p_idle_w``, as the module documents), in both segments of a step under actuation delay.
"""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import ConfigError, InputError
from policies.base import Decision, Policy
from tests.replay.test_vm import Scripted, frame
from traces.replay.power import PowerScenario, build_frame
from traces.replay.vm import VmScenario


def test_scale_down_cancels_the_newest_booting_replicas_first():
    # d = 3 throughout, capacity 1, boot 4 s, one replica ready at t=0.
    # t=1 ask 3: two boot, ready at 5; t=3 ask 5: two more boot, ready at 7;
    # t=4 ask 3: cancel two booting ones -> the newest (ready at 7) go, the t=1 pair stays.
    # ready: [0,5) 1, [5,10) 3 -> short 2 for 5 s: violation 0.5, unserved 10 / 30
    # (cancelling the oldest instead would leave [0,7) at 1 replica: 0.7 and 14 / 30)
    sc = VmScenario(capacity=1, boot_s=4, sync_s=1, initial_replicas=1)
    data = sc.prepare(frame([3] * 10))
    r = sc.run(Scripted(plan={1.0: 3, 3.0: 5, 4.0: 3}), data, timeline=True)
    assert r.totals["violation_rate"] == pytest.approx(0.5)
    assert r.totals["unserved_fraction"] == pytest.approx(10 / 30)
    assert r.timeline["capacity_ready"].tolist() == [1] * 5 + [3] * 5
    # requested: [0,1) 1, [1,3) 3, [3,4) 5, [4,10) 3 -> 1 + 6 + 5 + 18 = 30
    assert r.totals["replica_seconds"] == pytest.approx(30.0)


class FixedCaps(Policy):
    """Caps every server at ``cap_w`` from the first step on."""

    name = "fixed-caps"
    scenario = "power"
    defaults = {"cap_w": 0.0}

    def decide(self, spec, obs, forecast, now, memory=None):
        return Decision({"caps": np.full(spec.servers, float(self.params["cap_w"]))})


# two machines at full load (300 W each, idle 100 W), 4 one-minute steps, row of 2 servers
UTIL = np.full((4, 2), 100.0)


@pytest.mark.parametrize("cap_w", [0.0, 50.0, 99.0])
@pytest.mark.parametrize("delay_s", [0.0, 30.0])
def test_a_cap_below_idle_holds_the_server_at_idle_not_below(cap_w, delay_s):
    sc = PowerScenario(servers=2, delay_s=delay_s)
    data = sc.prepare(build_frame(UTIL, step_s=60.0))
    assert data.p_idle_w == 100.0 and data.budget_w == 600.0
    r = sc.run(FixedCaps(cap_w=cap_w), data, timeline=True)
    # delay 0: capped from step 0, each server draws max(cap, idle) = 100 W -> row 200 W.
    # delay 30 s: step 0 is uncapped for its first half (600 W), then 200 W -> 400 W mean;
    # from step 1 on both halves are under the cap -> 200 W.
    first = 0.2 if delay_s == 0 else 0.4
    np.testing.assert_allclose(r.timeline["row_power_kw"], [first, 0.2, 0.2, 0.2])
    # the clipped energy is what lies above idle, never idle power itself
    lost = (4 * 200.0 - (0 if delay_s == 0 else 100.0)) * 2 / (4 * 600.0)
    assert r.totals["performance_lost"] == pytest.approx(lost)
    assert r.totals["energy_clipped_kwh"] <= r.totals["energy_demanded_kwh"] * (2 / 3) + 1e-12


def test_an_actuation_delay_longer_than_a_step_lands_inside_a_later_step():
    # delay 90 s on one-minute steps: caps commanded at t=0 act from t=90 s. Step 0 is wholly
    # uncapped (600 W), step 1 for its first 30 s (600 W) then capped (200 W) -> 400 W mean,
    # steps 2 and 3 capped (200 W)
    sc = PowerScenario(servers=2, delay_s=90.0)
    r = sc.run(FixedCaps(cap_w=0.0), sc.prepare(build_frame(UTIL, step_s=60.0)), timeline=True)
    np.testing.assert_allclose(r.timeline["row_power_kw"], [0.6, 0.4, 0.2, 0.2])


def test_zero_demand_is_valid_and_auto_capacity_of_an_idle_trace_is_one():
    # negative demand is refused, zero is not (an idle service); with capacity auto and a
    # peak of 0 the capacity falls back to 1 unit instead of 0 (no division by zero)
    sc = VmScenario(boot_s=0, sync_s=1)
    data = sc.prepare(frame([0.0, 0.0, 0.0, 0.0]))
    assert [s.capacity for s in data.services] == [1.0]
    r = sc.run(Scripted(plan={}), data)
    assert r.totals["violation_rate"] == 0 and r.totals["unserved_fraction"] == 0
    assert r.timeline is None  # only when asked for
    data = VmScenario(capacity=1, boot_s=0, sync_s=1).prepare(frame([0.0, 2.0, 0.0]))
    assert data.services[0].demand.tolist() == [0.0, 2.0, 0.0]
    # the error names the negative sample (not the zero before it)
    with pytest.raises(InputError, match=r"negative demand -0.5 for entity 'svc' at ts 2.0"):
        VmScenario(capacity=1).prepare(frame([1.0, 0.0, -0.5, 2.0]))


@pytest.mark.parametrize("opt", [{"budget_servers": 0}, {"servers": 0}])
def test_a_row_of_no_servers_is_refused(opt):
    with pytest.raises(ConfigError, match=next(iter(opt))):
        PowerScenario(**opt)


def test_cpu_util_outside_0_100_is_clipped_to_idle_and_nameplate():
    # P = 100 + u/100 * 200 W with u clipped to [0, 100] %: -20 % -> 100 W, 150 % -> 300 W
    util = np.array([[-20.0, 150.0], [50.0, 0.0]])
    data = PowerScenario(servers=2).prepare(build_frame(util, step_s=60.0))
    np.testing.assert_allclose(data.demand_w, [[100.0, 300.0], [200.0, 100.0]])


def test_auto_capacity_is_a_tenth_of_a_small_peak():
    data = VmScenario(boot_s=0, sync_s=1).prepare(frame([0.0, 0.5, 0.25]))
    assert data.services[0].capacity == pytest.approx(0.05)


def test_a_sync_period_of_zero_is_refused():
    with pytest.raises(ValueError, match="sync_s"):
        VmScenario(sync_s=0)


def test_a_row_budgeted_for_one_server_is_valid():
    data = PowerScenario(budget_servers=1, servers=2).prepare(build_frame(UTIL, step_s=60.0))
    assert data.budget_w == 300.0 and data.demand_w.shape == (4, 2)


def test_runs_aligned_on_their_own_start_are_cut_to_the_shortest_in_steps():
    import pandas as pd

    # step 10 s: run a spans 0..50 s (6 samples), run b 1000..1030 s (4 samples) -> 4 steps
    a = pd.DataFrame(
        {"entity": "a", "metric": "power_w", "ts": np.arange(6) * 10.0, "value": np.arange(6) + 1.0}
    )
    b = pd.DataFrame(
        {
            "entity": "b",
            "metric": "power_w",
            "ts": 1000.0 + np.arange(4) * 10.0,
            "value": np.arange(4) + 7.0,
        }
    )
    f = pd.concat([a, b], ignore_index=True)
    f.attrs["step"] = 10.0
    data = PowerScenario(p_max_w=20.0, p_idle_w=0.0, servers=2, align="start").prepare(f)
    np.testing.assert_allclose(data.demand_w, [[1, 7], [2, 8], [3, 9], [4, 10]])


@pytest.mark.parametrize(("align", "t0"), [("time", 1_700_000_000.0), ("start", 0.0)])
def test_the_row_runs_on_the_trace_clock_or_from_each_run_start(align, t0):
    # one clock: steps carry the trace's own timestamps; runs aligned on their own start:
    # seconds since that start (the runs' clocks have nothing in common)
    frame = build_frame(UTIL, step_s=60.0)
    frame["ts"] += 1_700_000_000.0
    sc = PowerScenario(servers=2, align=align)
    data = sc.prepare(frame)
    assert data.resolved["align"] == align
    np.testing.assert_array_equal(data.ts, t0 + 60.0 * np.arange(4))
    r = sc.run(FixedCaps(cap_w=np.inf), data, timeline=True)
    np.testing.assert_array_equal(r.timeline["t_s"], t0 + 60.0 * np.arange(4))


def test_a_forecast_covers_at_least_one_step():
    from policies.bayes_power import BayesPower

    sc = PowerScenario(servers=2)
    data = sc.prepare(build_frame(UTIL, step_s=60.0))
    # the default reads the decision window [now + delay, now + delay + step] plus step 0:
    # ceil((40 s + 60 s) / 60 s) + 1 = 3 steps (docs/power.md)
    assert sc.forecast_horizon(BayesPower(), data) == 3
    assert sc.forecast_horizon(BayesPower(horizon=None), data) == 3
    assert sc.forecast_horizon(FixedCaps(), data) == 1  # a policy without a horizon
    assert sc.forecast_horizon(BayesPower(horizon=0), data) == 1
    assert sc.forecast_horizon(BayesPower(horizon=5), data) == 5  # an explicit horizon wins


def test_a_row_that_draws_no_power_loses_no_performance():
    # idle at 0 W and every series at 0 W: nothing demanded, nothing clipped -> 0, not NaN
    zeros = np.zeros((3, 2))
    sc = PowerScenario(servers=2, p_idle_w=0.0, p_max_w=10.0)
    data = sc.prepare(build_frame(zeros, metric="power_w", step_s=60.0))
    r = sc.run(FixedCaps(cap_w=0.0), data)
    assert r.totals["energy_demanded_kwh"] == 0.0
    assert r.totals["performance_lost"] == 0.0
    assert r.totals["performance_lost_low"] == 0.0 == r.totals["performance_lost_high"]


def test_by_default_a_service_is_never_scaled_to_zero():
    # README, vm scenario: min_replicas 1 by default. Zero demand throughout: the run starts
    # with ceil(0 / C) = 0 raised to 1, and a request for 0 replicas at t=2 keeps 1
    sc = VmScenario(capacity=1, boot_s=0, sync_s=1)
    data = sc.prepare(frame([0.0] * 5))
    r = sc.run(Scripted(plan={2.0: 0}), data, timeline=True)
    assert r.totals["replica_seconds"] == pytest.approx(5.0)
    assert r.timeline["capacity_ready"].tolist() == [1.0] * 5
    # with min_replicas 0 the same run holds none
    sc0 = VmScenario(capacity=1, boot_s=0, sync_s=1, min_replicas=0)
    r0 = sc0.run(Scripted(plan={2.0: 0}), sc0.prepare(frame([0.0] * 5)))
    assert r0.totals["replica_seconds"] == 0.0


def test_a_forecast_covers_boot_plus_one_decision_period_in_trace_steps():
    # boot 60 s + sync 15 s on a 10 s trace of one service: the sample in progress, then
    # ceil(75 / 10) = 8 steps
    sc = VmScenario(capacity=1, boot_s=60, sync_s=15)
    data = sc.prepare(frame([1.0] * 20, step=10.0))
    assert len(data.services) == 1
    assert sc.forecast_horizon(Scripted(plan={}), data) == 9
    # at least one step after it, even with no boot time and a period shorter than a step
    sc = VmScenario(capacity=1, boot_s=0, sync_s=1)
    assert sc.forecast_horizon(Scripted(plan={}), sc.prepare(frame([1.0] * 20, step=10.0))) == 2


@pytest.mark.parametrize("idle", [-1.0, "100"])
def test_a_negative_or_non_numeric_idle_power_is_refused(idle):
    with pytest.raises(ConfigError, match="p_idle_w"):
        PowerScenario(p_idle_w=idle)


class Unsure(Policy):
    """Never sure: every decision invalid (the caps in force are kept)."""

    name = "unsure"
    scenario = "power"

    def decide(self, spec, obs, forecast, now, memory=None):
        return Decision({"caps": np.full(len(spec.server_ids), np.inf)}, valid=False)


def test_invalid_power_decisions_are_counted():
    sc = PowerScenario(servers=2)
    r = sc.run(Unsure(), sc.prepare(build_frame(UTIL, step_s=60.0)))
    assert r.totals["invalid_steps"] == 4.0 == r.totals["steps"]
    r = sc.run(FixedCaps(cap_w=np.inf), sc.prepare(build_frame(UTIL, step_s=60.0)))
    assert r.totals["invalid_steps"] == 0.0
