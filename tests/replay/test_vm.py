"""The vm scenario's reference model, pinned with hand-computed figures on tiny traces."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.errors import InputError
from models.forecast import Forecast
from policies import registry
from policies.base import Decision, Policy
from traces.replay.vm import VmScenario


def frame(d, step=1.0, metric="cpu_cores", entity="svc", t0=0.0, **attrs):
    f = pd.DataFrame({
        "entity": entity, "metric": metric,
        "ts": t0 + np.arange(len(d)) * step, "value": np.asarray(d, dtype=float),
    })
    f.attrs.update({"step": step, **attrs})
    return f


class Scripted(Policy):
    """Asks for a replica count at given (relative) times; invalid (keep) otherwise."""

    name = "scripted"
    scenario = "vm"
    defaults = {"plan": None, "sync_s": 1.0}

    def decide(self, spec, obs, forecast, now, memory=None):
        plan = self.params["plan"]
        if now in plan:
            return Decision({"replicas": plan[now]}, state=memory)
        return Decision({"replicas": obs.replicas}, valid=False, state=memory)


def run(d, plan, step=1.0, **cfg):
    sc = VmScenario(**cfg)
    data = sc.prepare(frame(d, step=step))
    return sc.run(Scripted(plan=plan), data, timeline=True)


def test_cost_counts_booting_replicas_and_violations_use_ready_ones():
    # d = 2 2 2 6 6 6 6 2 2 2, capacity 2, boot 2 s; start with ceil(2/2) = 1 ready.
    # t=1 ask 3 (2 boot, ready at 3); t=6 ask 1 (2 removed at once).
    # requested: [0,1) 1, [1,6) 3, [6,10) 1 -> 1 + 15 + 4 = 20 replica-seconds
    # ready:     [0,3) 1, [3,6) 3, [6,10) 1 -> supply 2, 6, 2
    # violations: only t=6 (6 > 2), unserved 4 of 2*6 + 6*4 = 36
    r = run([2, 2, 2, 6, 6, 6, 6, 2, 2, 2], {1.0: 3, 6.0: 1}, capacity=2, boot_s=2, sync_s=1)
    assert r.totals["replica_seconds"] == pytest.approx(20.0)
    # served: min(demand, ready supply) = 2 2 2 6 6 6 2 2 2 2 -> 32 / 2 = 16 replica-seconds
    assert r.totals["idle_replica_seconds"] == pytest.approx(4.0)
    assert r.totals["violation_rate"] == pytest.approx(0.1)
    assert r.totals["unserved_fraction"] == pytest.approx(4 / 36)
    assert r.totals["scale_ups"] == 1 and r.totals["scale_downs"] == 1
    assert r.totals["invalid_decisions"] == 8
    assert r.timeline["capacity_ready"].tolist() == [2, 2, 2, 6, 6, 6, 2, 2, 2, 2]
    assert r.timeline["capacity_requested"].tolist() == [2, 6, 6, 6, 6, 6, 2, 2, 2, 2]


def test_scale_down_removes_booting_replicas_first():
    # t=1 ask 4 (3 booting, ready at 3); t=2 ask 2: two booting ones go, one still boots.
    # requested: 1 + 4 + 2*8 = 21; ready: [0,3) 1, [3,10) 2 -> demand 3 unserved until t=3
    r = run([3] * 10, {1.0: 4, 2.0: 2}, capacity=1.5, boot_s=2, sync_s=1,
            initial_replicas=1)
    assert r.totals["replica_seconds"] == pytest.approx(21.0)
    assert r.totals["violation_rate"] == pytest.approx(0.3)
    assert r.totals["unserved_fraction"] == pytest.approx(3 * 1.5 / 30)


def test_figures_integrate_time_when_decisions_fall_between_steps():
    # step 10 s, sync 15 s, boot 5 s; d = 20 30 30 10, capacity 10, start 1 replica (forced)
    # t=0 ask 3 (ready at 5), t=30 ask 1.
    # requested: [0,30) 3, [30,40) 1 -> 100; ready: [0,5) 1, [5,30) 3, [30,40) 1
    # violation: [0,5) 20 > 10 -> 5 s of 40; unserved 10 * 5 = 50 of 200 + 600 + 100 = 900
    r = run([20, 30, 30, 10], {0.0: 3, 30.0: 1}, step=10.0, capacity=10, boot_s=5,
            sync_s=15, initial_replicas=1)
    assert r.totals["replica_seconds"] == pytest.approx(100.0)
    assert r.totals["violation_rate"] == pytest.approx(5 / 40)
    assert r.totals["unserved_fraction"] == pytest.approx(50 / 900)
    assert r.totals["decisions"] == 3  # t = 0, 15, 30


def test_hpa_moves_through_the_scenario_by_hand():
    # capacity 1, boot 2 s, sync 1 s, HPA target 0.8 over a 15 s metric window.
    # t=1: mean 1 over 1 ready -> ratio 1.25 -> 2.  t=2: 1 unready: 1/2/0.8 < 1 -> hold.
    # t=3: mean 5/3 over 2 ready -> 1.04 (tolerance) -> hold.  t=4: mean 2 -> 1.25 -> 3.
    # t=5: 2.2/2/0.8 > 1 with 1 unready: 2.2/3/0.8 = 0.917 (tolerance) -> hold.
    # t>=6: ratios 0.97, 0.89, 0.83, 0.79 -> ceil(ratio * 3) = 3; scale-down is stabilised.
    # requested 1 + 2*3 + 3*6 = 25; ready 1,1,1,2,2,2,3,3,3,3; violations at t=2..5.
    sc = VmScenario(capacity=1, boot_s=2, sync_s=1)
    data = sc.prepare(frame([1, 1, 3, 3, 3, 3, 1, 1, 1, 1]))
    r = sc.run(registry.create("hpa", "vm"), data, timeline=True)
    assert r.totals["replica_seconds"] == pytest.approx(25.0)
    assert r.totals["violation_rate"] == pytest.approx(0.4)
    assert r.totals["unserved_fraction"] == pytest.approx((2 + 1 + 1 + 1) / 18)
    assert r.timeline["capacity_requested"].tolist() == [1, 2, 2, 2, 3, 3, 3, 3, 3, 3]
    assert r.totals["invalid_decisions"] == 1  # t=0: nothing observed yet


def test_oracle_and_static_peak_on_a_spike():
    # d = 1 x5, 5 x2, 1 x5; capacity 1, boot 2, sync 1.
    # oracle at t asks ceil(max d[t, t+3)): 1 1 1 5 5 5 5 1 1 1 1 1 (t=0..11) -> 28 replica-s
    # and ready covers the spike at t=5,6 (requested at t=3). static-peak: 5 for 12 s = 60.
    d = [1] * 5 + [5] * 2 + [1] * 5
    sc = VmScenario(capacity=1, boot_s=2, sync_s=1)
    data = sc.prepare(frame(d))
    o = sc.run(registry.create("oracle", "vm"), data).totals
    s = sc.run(registry.create("static-peak", "vm"), data).totals
    assert o["replica_seconds"] == pytest.approx(28.0)
    assert o["violation_rate"] == 0.0
    assert s["replica_seconds"] == pytest.approx(60.0)
    assert s["violation_rate"] == 0.0
    q = sc.run(registry.create("static-peak", "vm", quantile=0.5), data).totals
    assert q["replica_seconds"] == pytest.approx(12.0)  # median 1 -> 1 replica
    assert q["violation_rate"] == pytest.approx(2 / 12)


def test_boot_zero_is_immediate_and_bounds_clamp():
    r = run([1, 1, 9, 9], {1.0: 100}, capacity=1, boot_s=0, sync_s=1, max_replicas=5)
    assert r.totals["peak_replicas"] == 5
    assert r.timeline["capacity_ready"].tolist() == [1, 5, 5, 5]
    assert r.totals["unserved_fraction"] == pytest.approx(8 / 20)


def test_aggregate_sums_entities_and_separate_runs_each():
    # A: 1 1 4 4 at t=0..3; B: 2 2 2 2 at t=2..5; capacity 3, boot 0, oracle needs
    # ceil(d_t / 3) each second. separate: A 1+1+2+2, B 1*4 -> 10 replica-s.
    # aggregate: 1 1 6 6 2 2 -> 1+1+2+2+1+1 = 8.
    f = pd.concat([frame([1, 1, 4, 4], entity="A"), frame([2, 2, 2, 2], entity="B", t0=2.0)])
    f.attrs["step"] = 1.0
    sep = VmScenario(capacity=3, boot_s=0, sync_s=1, entities="separate")
    agg = VmScenario(capacity=3, boot_s=0, sync_s=1)
    ds, da = sep.prepare(f), agg.prepare(f)
    assert [len(s.demand) for s in ds.services] == [4, 4]
    assert da.services[0].demand.tolist() == [1, 1, 6, 6, 2, 2]
    oracle = registry.create("oracle", "vm")
    rs, ra = sep.run(oracle, ds), agg.run(oracle, da)
    assert rs.totals["replica_seconds"] == pytest.approx(10.0)
    assert ra.totals["replica_seconds"] == pytest.approx(8.0)
    assert rs.extra["entity_steps"] == 8 and ra.extra["entity_steps"] == 6


def test_cpu_util_times_cores_and_counts_per_step_become_rates():
    f = frame([50, 100], metric="cpu_util", static={"svc": {"cpu_num": 8}})
    d = VmScenario().prepare(f).services[0].demand
    assert d.tolist() == [4.0, 8.0]
    f = frame([60, 120], step=60.0, metric="requests", units={"requests": "requests per step"})
    data = VmScenario().prepare(f)
    assert data.services[0].demand.tolist() == [1.0, 2.0]
    assert data.resolved["units"] == "requests per second"


def test_resample_up_interpolates_down_averages_and_gaps_hold():
    up = VmScenario(resample_s=1).prepare(frame([0, 10], step=10.0)).services[0]
    assert up.step_s == 1.0
    assert up.demand.tolist() == list(range(11)) + [10.0] * 9
    down = VmScenario(resample_s=2).prepare(frame([1, 3, 5, 7])).services[0]
    assert down.demand.tolist() == [2.0, 6.0]
    gap = pd.DataFrame({"entity": "a", "metric": "cpu_cores", "ts": [0.0, 30.0],
                        "value": [5.0, 7.0]})
    gap.attrs["step"] = 10.0
    assert VmScenario().prepare(gap).services[0].demand.tolist() == [5, 5, 5, 7]


def test_policies_never_see_the_future_and_forecaster_gets_history_only():
    seen = []

    class Probe(Policy):
        name, scenario = "probe", "vm"
        defaults = {"sync_s": 7.0}
        needs_forecast = True

        def decide(self, spec, obs, forecast, now, memory=None):
            seen.append((now, len(obs.demand), obs.demand_all is not None,
                         None if forecast is None else forecast.start))
            return Decision({"replicas": 1}, state=memory)

    calls = []

    def forecaster(history, now, step, horizon):
        calls.append((now, history.shape, float(history[-1, 0])))
        return Forecast(np.zeros((2, horizon, 1)), now + step, step, ("demand",))

    d = np.arange(30, dtype=float)
    sc = VmScenario(capacity=1, boot_s=3)
    sc.run(Probe(), sc.prepare(frame(d, t0=100.0)), forecaster=forecaster)
    assert [s[0] for s in seen] == [100.0, 107.0, 114.0, 121.0, 128.0]
    for now, n_obs, has_future, _ in seen:
        assert n_obs == now - 100.0 and not has_future  # samples completed by now
    # the first decision has no history, so no forecast; later ones end at d[now-1]
    assert seen[0][3] is None
    assert calls == [(107.0, (7, 1), 6.0), (114.0, (14, 1), 13.0), (121.0, (21, 1), 20.0),
                     (128.0, (28, 1), 27.0)]


def test_runs_are_deterministic():
    rng = np.random.default_rng(3)
    d = rng.gamma(2.0, 5.0, size=600)
    sc = VmScenario()
    data = sc.prepare(frame(d))
    a = sc.run(registry.create("kpa", "vm"), data, seed=5).totals
    b = sc.run(registry.create("kpa", "vm"), data, seed=5).totals
    assert a == b


@pytest.mark.parametrize(
    ("cfg", "msg"),
    [({"entities": "each"}, "entities"), ({"capacity": 0}, "capacity"),
     ({"min_replicas": 5, "max_replicas": 2}, "min_replicas"), ({"nope": 1}, "nope")],
)
def test_bad_options_are_refused(cfg, msg):
    with pytest.raises(ValueError, match=msg):
        VmScenario(**cfg)


def test_bad_frames_are_refused_with_a_clear_message():
    with pytest.raises(InputError, match="no demand metric.*mem_util"):
        VmScenario().prepare(frame([1, 2], metric="mem_util"))
    with pytest.raises(InputError, match="negative demand -1.0 for entity 'svc'"):
        VmScenario().prepare(frame([1, -1]))
    with pytest.raises(InputError, match="metric 'requests' not in the trace"):
        VmScenario(metric="requests").prepare(frame([1, 2]))


def test_a_shortfall_within_rounding_is_not_a_miss():
    # capacity auto = peak / 10; ten replicas serve exactly the peak even when
    # 10 * (peak / 10) rounds below it
    peak = 1.614495462956232
    assert peak / 10 * 10 < peak  # rounds below in floating point
    sc = VmScenario(boot_s=0, sync_s=1)
    data = sc.prepare(frame([peak] * 5))
    r = sc.run(registry.create("static-peak", "vm"), data)
    assert r.totals["violation_rate"] == 0.0 and r.totals["unserved_fraction"] == 0.0
    assert r.totals["replica_seconds"] == pytest.approx(50.0)


def test_upsampling_separate_entities_keeps_each_span():
    # A at t=0, 10 (values 0, 10); B at t=10, 20 (values 4, 4); 10 s -> 5 s
    f = pd.concat([frame([0, 10], step=10.0, entity="A"),
                   frame([4, 4], step=10.0, entity="B", t0=10.0)])
    f.attrs["step"] = 10.0
    sep = VmScenario(resample_s=5, entities="separate").prepare(f).services
    assert [(s.name, s.start_s, s.demand.tolist()) for s in sep] == [
        ("A", 0.0, [0.0, 5.0, 10.0, 10.0]), ("B", 10.0, [4.0, 4.0, 4.0, 4.0])]
    agg = VmScenario(resample_s=5).prepare(f).services[0]
    # the sum of each entity within its own span (0 outside it)
    assert agg.demand.tolist() == [0.0, 5.0, 14.0, 14.0, 4.0, 4.0]


def test_changes_between_sample_boundaries_are_integrated_exactly():
    # decisions every 1.5 s on 1-s samples: the request at t=1.5 and its replicas ready at
    # t=2.5 both fall inside samples. requested: [0,1.5) 1, [1.5,10) 3 -> 1.5 + 25.5 = 27
    # replica-seconds; ready [0,2.5) 1, [2.5,10) 3: demand 6 from t=4 is always served
    r = run([2] * 4 + [6] * 6, {1.5: 3}, capacity=2, boot_s=1, sync_s=1.5)
    assert r.totals["replica_seconds"] == pytest.approx(27.0)
    assert r.totals["violation_rate"] == 0.0 and r.totals["unserved_fraction"] == 0.0
