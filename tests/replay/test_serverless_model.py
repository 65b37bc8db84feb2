"""The serverless reference model on hand-computed tiny traces."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pytest

from common.errors import InputError
from policies import registry
from policies.base import Decision, Policy
from policies.scenarios.serverless import recent_max
from traces.replay.base import get_scenario
from traces.replay.serverless import (
    ServerlessScenario,
    build_frame,
    required_concurrency,
)

# 3 functions x 8 minutes; f1 runs 2 minutes per invocation
INV = np.array([
    # f0  f1  f2
    [0, 1, 4],
    [3, 0, 5],
    [0, 2, 0],
    [0, 0, 0],
    [0, 0, 0],
    [0, 0, 0],
    [2, 0, 0],
    [0, 1, 0],
])
DUR_MS = [1000.0, 120_000.0, 30_000.0]
MEM_MB = [128.0, 256.0, 512.0]
# c = 0 if n = 0 else max(1, ceil(n*d/60 s)):
#   f0: 3*1 s -> 1, 2*1 s -> 1;  f1: 1*120 s -> 2, 2*120 s -> 4;  f2: 4*30 s -> 2, 5*30 s -> 3
C = np.array([[0, 2, 2], [1, 0, 3], [0, 4, 0], [0, 0, 0],
              [0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 2, 0]])


def _data():
    sc = ServerlessScenario()
    return sc, sc.prepare(build_frame(INV, DUR_MS, MEM_MB))


def test_required_concurrency_matches_hand_values():
    _, data = _data()
    np.testing.assert_array_equal(data.concurrency, C)
    # exact multiples of the step do not round up; one ms more does
    c = required_concurrency(np.array([[1, 2, 1, 3, 0]]),
                             np.array([60_000.0, 60_000.0, 60_001.0, 10.0, 5.0]), 60.0)
    np.testing.assert_array_equal(c, [[1, 2, 2, 1, 0]])


def test_keepalive_2min_figures_by_hand():
    sc, data = _data()
    res = sc.run(registry.create("keepalive-10m", "serverless", keepalive_min=2), data,
                 timeline=True)
    # w_t = max(c_{t-1}, c_{t-2}):
    #   f0 w = 0 0 1 1 0 0 0 1 -> cold at t1, t6 (2); idle t2, t3, t7 (3 inst-min x 128 MB)
    #   f1 w = 0 2 2 4 4 0 0 0 -> cold 2 (t0) + 2 (t2) + 2 (t7) = 6; idle 2+4+4 = 10 x 256 MB
    #   f2 w = 0 2 3 3 0 0 0 0 -> cold 2 (t0) + 1 (t1) = 3;        idle 3+3 = 6 x 512 MB
    assert res.totals["invocations"] == 18
    assert res.totals["cold_starts"] == 11
    assert res.totals["cold_start_rate"] == pytest.approx(11 / 18)
    wasted_mb_s = (3 * 128 + 10 * 256 + 6 * 512) * 60
    assert res.totals["wasted_memory_gb_s"] == pytest.approx(wasted_mb_s / 1024)  # 352.5
    tl = res.timeline
    np.testing.assert_array_equal(tl["cold_starts"], [4, 2, 2, 0, 0, 0, 1, 2])
    np.testing.assert_array_equal(tl["warm"], [0, 4, 6, 8, 4, 0, 0, 1])
    np.testing.assert_array_equal(tl["concurrency"], C.sum(axis=1))
    np.testing.assert_array_equal(tl["t_s"], 60.0 * np.arange(8))


def test_keepalive_1min_is_last_minute_concurrency():
    sc, data = _data()
    res = sc.run(registry.create("keepalive-10m", "serverless", keepalive_min=1), data,
                 timeline=True)
    w = np.vstack([np.zeros(3, int), C[:-1]])
    assert res.totals["cold_starts"] == np.maximum(0, C - w).sum()
    idle = np.maximum(0, w - C)
    assert res.totals["wasted_memory_gb_s"] == pytest.approx(
        (idle @ np.array(MEM_MB)).sum() * 60 / 1024)


def test_oracle_and_static_peak_by_hand():
    sc, data = _data()
    oracle = sc.run(registry.create("oracle", "serverless"), data)
    assert oracle.totals["cold_starts"] == 0
    assert oracle.totals["wasted_memory_gb_s"] == 0
    assert oracle.totals["warm_memory_gb_s"] == pytest.approx(
        (C @ np.array(MEM_MB)).sum() * 60 / 1024)
    peak = sc.run(registry.create("static-peak", "serverless"), data)
    # peaks 1, 4, 3 held for 8 minutes; idle = 8*peak - sum(c) = 6, 24, 19 instance-minutes
    assert peak.totals["cold_starts"] == 0
    assert peak.totals["wasted_memory_gb_s"] == pytest.approx(
        (6 * 128 + 24 * 256 + 19 * 512) * 60 / 1024)  # 975.0


def test_missing_minutes_are_zero_invocations():
    sc, data = _data()
    frame = build_frame(INV, DUR_MS, MEM_MB)
    sparse = frame[frame["value"] > 0].copy()
    sparse.attrs = dict(frame.attrs)
    data2 = sc.prepare(sparse)
    np.testing.assert_array_equal(data2.concurrency, data.concurrency)


def test_keepalive_in_seconds_steps():
    # a 30 s trace: a 1-minute keep-alive spans 2 steps
    sc = ServerlessScenario()
    inv = np.array([[1], [0], [0], [1], [0], [1]])
    data = sc.prepare(build_frame(inv, [1000.0], [100.0], step_s=30.0))
    res = sc.run(registry.create("keepalive-10m", "serverless", keepalive_min=1), data)
    # busy at 0, 3, 5: t3 is 3 steps after -> cold; t5 is 2 steps after t3 -> warm
    assert res.totals["cold_starts"] == 2
    # warm idle at t1, t2 (after t0) and t4 (after t3): 3 steps x 100 MB x 30 s
    assert res.totals["wasted_memory_gb_s"] == pytest.approx(3 * 100 * 30 / 1024)


def test_recent_max_per_function_windows():
    h = np.array([[5, 1, 0], [0, 2, 0], [1, 0, 3]])  # oldest first
    np.testing.assert_array_equal(recent_max(h, 2), [1, 2, 3])
    np.testing.assert_array_equal(recent_max(h, np.array([3, 1, 0])), [5, 0, 0])
    np.testing.assert_array_equal(recent_max(h[:0], 4), [0, 0, 0])


class _Flaky(Policy):
    name: ClassVar[str] = "flaky-test"
    scenario: ClassVar[str] = "serverless"

    def decide(self, spec: Any, obs: Any, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        t = obs.t
        if t % 2:
            return Decision(action={}, valid=False, why="no data")
        return Decision(action={"warm": np.full(len(spec.entities), t)})


def test_invalid_decision_keeps_previous_warm():
    sc, data = _data()
    res = sc.run(_Flaky(), data, timeline=True)
    assert res.totals["invalid_steps"] == 4
    n_f = 3
    np.testing.assert_array_equal(res.timeline["warm"], [0, 0, 2 * n_f, 2 * n_f, 4 * n_f,
                                                         4 * n_f, 6 * n_f, 6 * n_f])


class _BadShape(Policy):
    name: ClassVar[str] = "bad-shape-test"
    scenario: ClassVar[str] = "serverless"

    def decide(self, spec: Any, obs: Any, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        return Decision(action={"warm": np.zeros(2)})


def test_wrong_action_shape_is_a_clear_error():
    sc, data = _data()
    with pytest.raises(ValueError, match=r"bad-shape-test.*\(3,\)"):
        sc.run(_BadShape(), data)


def test_prepare_errors_name_the_problem():
    sc = ServerlessScenario()
    frame = build_frame(INV, DUR_MS, MEM_MB)
    del frame.attrs["static"]["f1"]["memory_mb"]
    with pytest.raises(InputError, match=r"'f1'.*memory_mb"):
        sc.prepare(frame)
    other = build_frame(INV, DUR_MS, MEM_MB)
    other["metric"] = "cpu_util"
    with pytest.raises(InputError, match="invocations"):
        sc.prepare(other)
    off = build_frame(INV, DUR_MS, MEM_MB)
    off.loc[5, "ts"] += 7.0
    with pytest.raises(InputError, match="not on the 60 s grid"):
        sc.prepare(off)
    neg = build_frame(INV, DUR_MS, MEM_MB)
    neg.loc[3, "value"] = -1
    with pytest.raises(InputError, match="whole number >= 0"):
        sc.prepare(neg)


def test_scenario_is_registered():
    assert get_scenario("serverless") is ServerlessScenario
    assert {"keepalive-10m", "keepalive-20m", "hybrid-histogram", "oracle",
            "static-peak"} <= set(registry.names("serverless"))
