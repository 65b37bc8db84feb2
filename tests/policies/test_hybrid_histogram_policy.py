"""Hybrid histogram policy (ATC'20): windows from known idle-time sequences."""

from __future__ import annotations

import numpy as np
import pytest

from policies import registry
from policies.hybrid_histogram import (
    MODE_FALLBACK,
    MODE_FORECAST,
    MODE_HISTOGRAM,
    ar1_forecast,
)
from tests.policies.conftest import serverless_inputs
from traces.replay.serverless import ServerlessScenario, build_frame


def _policy(**kw):
    return registry.create("hybrid-histogram", "serverless", **kw)


def _hist(idle_minutes, n_bins=240):
    h = np.zeros((1, n_bins), dtype=np.int32)
    oob = np.zeros(1, dtype=np.int64)
    for x in idle_minutes:
        if x < n_bins:
            h[0, int(x)] += 1
        else:
            oob[0] += 1
    idle = np.full((1, 32), np.nan)
    tail = np.asarray(idle_minutes, dtype=float)[-32:]
    idle[0, 32 - len(tail):] = tail
    return h, oob, idle


def test_histogram_windows_by_hand():
    # 19 idle times of 10 min and one of 12: head (5th pct) = bin 10 -> 10 min x 0.9 = 9;
    # tail (99th pct) = bin 12, upper edge 13 min x 1.1 = 14.3 -> warm while 9 <= e < 15
    pre, ka, mode = _policy().windows(*_hist([10] * 19 + [12]), step_s=60.0)
    assert (pre[0], ka[0], mode[0]) == (9, 15, MODE_HISTOGRAM)


def test_too_few_idle_times_fall_back_to_the_4h_keepalive():
    pre, ka, mode = _policy().windows(*_hist([10, 10, 10]), step_s=60.0)
    assert (pre[0], ka[0], mode[0]) == (0, 240, MODE_FALLBACK)


def test_flat_histogram_cv_below_2_falls_back():
    # one idle time in every bin: CV of the bin counts is 0
    pre, ka, mode = _policy().windows(*_hist(list(range(240))), step_s=60.0)
    assert (pre[0], ka[0], mode[0]) == (0, 240, MODE_FALLBACK)
    # the same spread over 3 bins is concentrated enough (CV = sqrt(240/3 - 1) = 8.9)
    pre, ka, mode = _policy().windows(*_hist([4, 5, 6] * 4), step_s=60.0)
    assert mode[0] == MODE_HISTOGRAM
    assert (pre[0], ka[0]) == (4, 8)  # ceil(4 x 0.9) = 4; upper edge 7 x 1.1 = 7.7 -> 8


def test_out_of_bounds_idle_times_use_the_ar_forecast():
    # all idle times 300 min > 4 h range: forecast 300 -> warm from 255 to 345 minutes
    pre, ka, mode = _policy().windows(*_hist([300.0] * 6), step_s=60.0)
    assert (pre[0], ka[0], mode[0]) == (255, 345, MODE_FORECAST)


def test_ar1_forecast_by_hand():
    # mean 2.5, deviations -1.5 -.5 .5 1.5: phi = 1.25 / 2.75; forecast 2.5 + phi * 1.5
    x = np.array([[1.0, 2.0, 3.0, 4.0], [np.nan, np.nan, np.nan, 7.0],
                  [np.nan, np.nan, 5.0, 9.0], [6.0, 6.0, 6.0, 6.0]])
    np.testing.assert_allclose(ar1_forecast(x), [2.5 + 1.25 / 2.75 * 1.5, 7.0, 9.0, 6.0])


def _run_decisions(history, pol):
    """Call decide step by step as the replay does; return warm per step (T,)."""
    n_t = len(history)
    h = np.asarray(history, dtype=np.int64).reshape(n_t, 1)
    mem, out, modes = None, [], []
    for t in range(n_t):
        before = None if mem is None else {k: v.copy() for k, v in mem.items()}
        spec, obs = serverless_inputs(h[:t], functions=1, duration_ms=[1.0], memory_mb=[1.0])
        dec = pol.decide(spec, obs, None, 60.0 * t, memory=mem)
        if before is not None:  # decide never edits the memory it was given
            for k in before:
                np.testing.assert_array_equal(before[k], mem[k])
        mem = dec.state
        out.append(int(dec.action["warm"][0]))
        modes.append(dec.details)
    return np.array(out), modes


def test_decide_prewarms_inside_the_learned_window():
    busy = [11 * i for i in range(20)]  # 19 idle gaps of 10 minutes
    busy.append(busy[-1] + 13)  # one gap of 12 minutes; last busy step 222
    hist = np.zeros(250, dtype=np.int64)
    hist[busy] = 2  # two instances busy each time
    warm, modes = _run_decisions(hist, _policy())
    # after the last busy step (222) the windows are pre 9, ka 15: e = t - 223 in [9, 15)
    assert warm[223:232].tolist() == [0] * 9
    assert warm[232:238].tolist() == [2] * 6
    assert warm[238:250].tolist() == [0] * 12
    assert modes[-1]["histogram"] == 1
    # early on (fewer than 5 idle times) it keeps both instances for the 4 h fallback
    assert warm[1:11].tolist() == [2] * 10
    assert modes[12]["fallback-keepalive"] == 1


def test_prewarm_window_unloads_busy_instances_and_reloads_later():
    # w = max(c over ka steps) - max(c over pre steps): with pre 9, an instance busy 3
    # steps ago is not warm, but the 2 extra instances busy 12 steps ago are
    busy = [11 * i for i in range(20)] + [222]
    hist = np.zeros(240, dtype=np.int64)
    hist[busy] = 1
    hist[222] = 3  # three instances at step 222 (windows after it: pre 9, ka 15)
    hist[231] = 1  # busy again at 231 (idle 8): 21 idle times, windows stay pre 9, ka 15
    warm, _ = _run_decisions(hist, _policy())
    # the idle time 8 is 1 of 21 (4.8 % < 5 %), so the head stays bin 10: pre 9, ka 15.
    # at t=235: instance 1 idle 3 steps (< pre 9) -> unloaded; instances 2, 3 idle 12
    # steps -> inside [9, 15) -> warm; so w = 3 - 1 = 2
    assert warm[235] == 2
    # at t=239: instances 2, 3 idle 16 >= 15 -> gone; instance 1 idle 7 < 9 -> not yet
    assert warm[239] == 0


def test_with_no_histogram_trust_it_is_exactly_fixed_keepalive(seed):
    rng = np.random.default_rng(seed)
    inv = rng.poisson(0.05, size=(600, 12)) * rng.integers(0, 4, size=(600, 12))
    sc = ServerlessScenario()
    data = sc.prepare(build_frame(inv, rng.integers(100, 200_000, 12), np.full(12, 128.0)))
    # never representative, never out of bounds: the 4 h fallback keep-alive every time
    hybrid = sc.run(_policy(min_idle_times=10**9, oob_threshold=1.0), data)
    fixed = sc.run(registry.create("keepalive-10m", "serverless", keepalive_min=240), data)
    assert hybrid.totals["cold_starts"] == fixed.totals["cold_starts"] > 0
    assert hybrid.totals["wasted_memory_gb_s"] == pytest.approx(
        fixed.totals["wasted_memory_gb_s"])


def test_sweep_and_bad_params():
    cls = registry.get("hybrid-histogram", "serverless")
    assert cls.sweep_param == "tail_percentile"
    assert 99.0 in cls.sweep_grid
    with pytest.raises(ValueError, match="margin"):
        _policy(margin=1.5)
    with pytest.raises(ValueError, match="head_percentile"):
        _policy(head_percentile=99.5, tail_percentile=99.0)
