"""bench/oversub.py: the GenAI duty-cycle row's watts and the ratio search on known rows."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from traces.replay.power import PowerScenario, build_frame

_spec = importlib.util.spec_from_file_location(
    "oversub", Path(__file__).resolve().parents[2] / "bench" / "oversub.py")
oversub = importlib.util.module_from_spec(_spec)
sys.modules["oversub"] = oversub  # dataclasses look their module up
_spec.loader.exec_module(oversub)

GPU = {"p_max_w": 700.0, "p_idle_w": 70.0}


def test_duty_cycle_becomes_watts_through_the_linear_gpu_model():
    duty = np.array([[0.0, 100.0], [50.0, 10.0], [120.0, -5.0]])  # (T=3, S=2) percent
    sc = PowerScenario(metric="gpu_util", servers=2, **GPU)
    data = sc.prepare(build_frame(duty, metric="gpu_util", step_s=57.0))
    # 70 + 630 x duty, duty clipped to [0, 1]
    np.testing.assert_allclose(data.demand_w, [[70, 700], [385, 133], [700, 70]])
    assert data.budget_w == 1400.0 and data.resolved["metric"] == "gpu_util"
    # auto finds gpu_util when the trace has neither power_w nor cpu_util
    auto = PowerScenario(servers=2, **GPU).prepare(build_frame(duty, metric="gpu_util"))
    np.testing.assert_allclose(auto.demand_w, data.demand_w)


def test_busiest_full_span_pods_are_chosen_deterministically():
    rows = []
    for name, mean, span in [("a", 10, 10), ("b", 50, 10), ("c", 30, 10), ("d", 90, 3),
                             ("e", 30, 10)]:
        rows += [{"entity": name, "metric": "gpu_util", "ts": 57.0 * t, "value": float(mean)}
                 for t in range(span)]
    frame = pd.DataFrame(rows)
    frame.attrs["step"] = 57.0
    out = oversub.busiest_pods(frame, pods=3)
    # d is busiest but spans 30 % of the trace; c and e tie at 30 -> by name
    assert sorted(out["entity"].unique()) == ["b", "c", "e"]
    assert out.attrs["step"] == 57.0
    with pytest.raises(ValueError, match="only 4"):
        oversub.busiest_pods(frame, pods=5)


def test_ratio_search_on_a_row_whose_answer_is_known():
    # 4 budget servers x 700 W = 2,800 W; every server draws 350 W all the time, so n servers
    # draw 350 n W: the oracle needs no cap up to 8 servers (2.0x) and caps from 9 (2.25x);
    # POLCA caps the low-priority half once the row exceeds 80 % of its budget (> 6.4
    # servers): no cap at 6 (1.5x, 75 %), caps at 7 (1.75x, 87.5 %). No actuation delay.
    frame = build_frame(np.full((20, 4), 350.0), metric="power_w", step_s=60.0)
    ratios = oversub.ratio_grid(1.0, 3.0, 0.25)
    assert ratios[:3] == [1.0, 1.25, 1.5] and ratios[-1] == 3.0
    opts = {**GPU, "delay_s": 0.0}
    ora = oversub.scan_policy(frame, opts, "oracle", {}, ratios)
    assert ora["ratio"] == 2.0 and ora["at"]["servers"] == 8 and ora["at"]["capped_fraction"] == 0
    assert ora["next_ratio"] == 2.25 and ora["next"]["breach_steps"] == 0
    assert ora["next"]["capped_fraction"] > 0.01
    pol = oversub.scan_policy(frame, opts, "polca", {}, ratios)
    assert pol["ratio"] == 1.5 and pol["next_ratio"] == 1.75
    # the scan stops after `patience` consecutive failures
    assert [p["ratio"] for p in pol["points"]][-1] == 2.0


def test_highest_ratio_reads_the_first_failure_and_flags_later_passes():
    ok = {"breach_steps": 0.0, "capped_fraction": 0.0}
    capped = {"breach_steps": 0.0, "capped_fraction": 0.02}
    breach = {"breach_steps": 1.0, "capped_fraction": 0.0}
    table = {1.0: ok, 1.1: ok, 1.2: capped, 1.3: ok, 1.4: breach, 1.5: breach, 1.6: ok}
    res = oversub.highest_ratio(table.__getitem__, sorted(table), patience=2)
    assert res["ratio"] == 1.1 and res["next_ratio"] == 1.2
    assert res["passes_above"] == [1.3]
    assert [p["ratio"] for p in res["points"]] == [1.0, 1.1, 1.2, 1.3, 1.4, 1.5]
    assert oversub.highest_ratio(lambda r: breach, [1.0])["ratio"] is None
    assert oversub.highest_ratio(lambda r: ok, [1.0, 2.0])["next"] is None
    # exactly 1 % capped still passes
    assert oversub.passes({"breach_steps": 0.0, "capped_fraction": 0.01})


def test_refinement_finds_the_fine_answer_between_coarse_points():
    # passes up to 2.35 inclusive
    def run_at(r):
        return {"breach_steps": float(r > 2.35 + 1e-9), "capped_fraction": 0.0}

    res = oversub.refined_ratio(run_at, oversub.ratio_grid(1.0, 4.0, 0.25), 0.05)
    assert res["ratio"] == 2.35 and res["next_ratio"] == 2.4
    # every fine ratio passes: the coarse first failure stays the next step
    res = oversub.refined_ratio(lambda r: run_at(r - 0.1), oversub.ratio_grid(1.0, 4.0, 0.25),
                                0.05)
    assert res["ratio"] == 2.45 and res["next_ratio"] == 2.5


def test_uncapped_ratio_pools_the_demand_breaches_of_every_policy():
    def pt(r, d):
        return {"ratio": r, "totals": {"demand_breach_steps": d}}

    res = {"a": {"points": [pt(1.0, 0), pt(1.1, 0), pt(1.2, 3)]},
           "b": {"points": [pt(1.0, 0), pt(1.1, 0)]}}
    assert oversub.uncapped_ratio(res) == (1.1, 1.2)
    assert oversub.uncapped_ratio({"b": res["b"]}) == (1.1, None)


def test_governing_decisions_follow_the_actuation_delay():
    # 1 s steps, 40 s delay: step 50 runs wholly under the caps decided before step 10
    assert oversub.governing(50, 1.0, 40.0) == [10]
    assert oversub.governing(39, 1.0, 40.0) == []  # nothing decided yet acts
    # 57 s steps: the first 40 s of step 5 under decision 4, the last 17 s under decision 5
    assert oversub.governing(5, 57.0, 40.0) == [4, 5]
    assert oversub.governing(0, 57.0, 40.0) == [0]
    assert oversub.governing(7, 60.0, 0.0) == [7]  # no delay (the oracle)


def _jump_row() -> pd.DataFrame:
    # 3 servers at 300 W for steps 0-4 (row 900 W), then 600 W (row 1800 W) for steps 5-9;
    # the budget holds 2 servers at 700 W = 1400 W
    v = np.full((10, 3), 300.0)
    v[5:] = 600.0
    return build_frame(v, metric="power_w", step_s=60.0)


def test_explain_names_each_breach_step_and_the_decision_that_capped_it():
    # POLCA with a one-step delay (60 s): step 5 and 6 breach under no caps (decided at 4
    # and 5, when the row was calm); the brake decided at 6 (row at 129 %) holds steps 7-8
    # at 3 x 350 W; decided at 8 on step 7's 75 %, only the low-priority server is capped
    # (525 W) and step 9 breaches again under it: 600 + 525 + 600 W
    opts = {**GPU, "delay_s": 60.0, "budget_servers": 2, "servers": 3}
    ex = oversub.explain(_jump_row(), opts, "polca", {}, 1.5)
    assert [b["step"] for b in ex["breaches"]] == [5, 6, 9]
    assert ex["totals"]["breach_steps"] == 3
    assert [[d["step"] for d in b["decisions"]] for b in ex["breaches"]] == [[4], [5], [8]]
    assert ex["breaches"][0]["decisions"][0]["why"].endswith("uncapped")
    last = ex["breaches"][2]
    assert last["decisions"][0]["why"].endswith("cap-low")
    assert last["demand"] == pytest.approx(1800 / 1400)
    assert last["row"] == pytest.approx(1725 / 1400)
    # a 40 s delay on 60 s steps: each step has two governing decisions
    ex = oversub.explain(_jump_row(), {**opts, "delay_s": 40.0}, "polca", {}, 1.5)
    assert ex["breaches"][0]["step"] == 5
    assert [d["step"] for d in ex["breaches"][0]["decisions"]] == [4, 5]
    assert len(ex["breaches"]) == ex["totals"]["breach_steps"]
