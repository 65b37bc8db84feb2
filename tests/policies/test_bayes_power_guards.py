"""``bayes`` power lifts caps only with margin: P(uncapped breach) <= release_ratio x target.

Lifting as soon as the uncapped risk is merely under the target would flap: the next
forecast a little hotter caps again. Issue 12, item 11.
"""

from __future__ import annotations

import numpy as np
import pytest

from models.forecast import Forecast
from policies.bayes_power import BayesPower
from tests.policies.conftest import power_inputs

IDLE, PMAX = 100.0, 500.0
CALM = [300.0, 300.0, 300.0]  # row 900 W
HOT = [500.0, 400.0, 400.0]  # row 1300 W > 1000 W


def joint(hot_paths: int, paths: int = 20) -> Forecast:
    x = np.asarray([HOT] * hot_paths + [CALM] * (paths - hot_paths), dtype=float)
    return Forecast(
        samples=np.repeat(x[:, None, :], 5, axis=1),
        start=0.0,
        step=1.0,
        indicators=("s0", "s1", "s2"),
        model="hand",
    )


def inputs(caps, delay_s=0.0, step_s=1.0):
    """A row of 3 servers (s0, s1 low priority) at 300 W each, ``caps`` in force."""
    return power_inputs([300.0] * 3, servers=3, budget_w=1000.0, p_max_w=PMAX, p_idle_w=IDLE,
                        low_priority=[True, True, False], step_s=step_s, delay_s=delay_s,
                        caps_w=caps)


def run(pol: BayesPower, hot_paths: list[int]) -> list:
    """Decide at t = 0, 1, 2, ... with the given hot-path counts; caps carried over."""
    caps, memory, out = np.full(3, np.inf), None, []
    for t, hot in enumerate(hot_paths):
        d = pol.decide(*inputs(caps), joint(hot), float(t), memory=memory)
        assert d.valid and not d.fallback
        caps, memory = np.asarray(d.action["caps"], dtype=float), d.state
        out.append(d)
    return out


def test_caps_stay_while_the_uncapped_risk_is_under_target_but_not_under_the_margin():
    # target 10 %, release_ratio 0.25 -> lift only at P <= 2.5 %. 4 hot paths of 20 (20 %)
    # call for a cap; then 1 hot path of 20 = 5 %: under the target, above the margin.
    pol = BayesPower(target_breach=0.10, release_ratio=0.25, release_hold_s=2.0)
    ds = run(pol, [4] + [1] * 6)
    assert np.isfinite(ds[0].action["caps"]).sum() == 1
    for d in ds[1:]:
        assert d.details["p_breach_uncapped"] == 0.05
        assert np.isfinite(d.action["caps"]).sum() == 1, d.why  # held, never lifted
        assert d.why.startswith("hold caps")


def test_caps_lift_once_the_margin_has_held_for_release_hold_s():
    pol = BayesPower(target_breach=0.10, release_ratio=0.25, release_hold_s=2.0)
    # 0 hot paths from t=1: calm since 1, held 2 s at t=3 -> lifted then, not before
    ds = run(pol, [4, 0, 0, 0, 0])
    capped = [int(np.isfinite(d.action["caps"]).sum()) for d in ds]
    assert capped == [1, 1, 1, 0, 0]
    assert ds[3].why.startswith("lift all")
    # a risk of exactly release_ratio x target counts as calm (<=): 1 hot path in 40
    pol = BayesPower(target_breach=0.10, release_ratio=0.25, release_hold_s=0.0)
    d0 = pol.decide(*inputs(np.full(3, np.inf)), joint(4), 0.0)
    x = pol.decide(*inputs(d0.action["caps"]), joint(1, paths=40), 1.0, memory=d0.state)
    assert x.details["p_breach_uncapped"] == 0.025 and x.why.startswith("lift all")


def test_the_default_release_margin_is_half_the_target_with_no_hold():
    # defaults: target 1 %, release_ratio 0.5, release_hold_s 0 -> lift at the first
    # decision whose uncapped risk is <= 0.5 %, never while it is 1 %
    pol = BayesPower()
    assert (pol.params["target_breach"], pol.params["release_ratio"],
            pol.params["release_hold_s"]) == (0.01, 0.5, 0.0)
    caps, memory = np.full(3, np.inf), None
    for t, (hot, paths) in enumerate([(20, 200)] + [(2, 200)] * 12):  # then 1 % for 12 s
        d = pol.decide(*inputs(caps), joint(hot, paths), float(t), memory=memory)
        caps, memory = np.asarray(d.action["caps"], dtype=float), d.state
        assert np.isfinite(caps).sum() == 1, (t, d.why)  # capped, then held, never lifted
    d = pol.decide(*inputs(caps), joint(1, 200), 13.0, memory=memory)  # 0.5 %: calm
    assert not np.isfinite(np.asarray(d.action["caps"], dtype=float)).any(), d.why
    assert d.why.startswith("lift all")


def test_the_decision_reports_the_window_its_caps_govern():
    x = np.repeat(np.asarray([CALM] * 10, dtype=float)[:, None, :], 8, axis=1)
    fc = Forecast(samples=x, start=0.0, step=15.0, indicators=("s0", "s1", "s2"), model="h")
    d = BayesPower().decide(*inputs(np.full(3, np.inf), delay_s=40.0, step_s=15.0), fc, 0.0)
    assert d.details["window_s"] == [40.0, 55.0]
    assert "[now+40s, now+55s]" in d.why


def test_the_planning_cli_turns_cpu_util_into_power(tmp_path, capsys):
    import json

    from policies.bayes_power import main

    # two servers at 100 % for 10 of 100 s, else 0 %; idle 100 W, peak 300 W ->
    # the power_w example of test_plan_row_from_long_frame_and_no_data
    ts = np.arange(100)
    util = np.where(ts < 90, 0.0, 100.0)
    rows = ["entity,metric,ts,value"] + [
        f"{e},cpu_util,{t},{u}" for e in ("a", "b") for t, u in zip(ts, util, strict=True)
    ]
    path = tmp_path / "util.csv"
    path.write_text("\n".join(rows) + "\n")
    rc = main([str(path), "--budget-w", "1000", "--target", "0.2", "--rows", "4000"])
    out = capsys.readouterr()
    assert rc == 0, out.err
    plan = json.loads(out.out)
    assert plan["pool"] == 2 and plan["servers_at_peak"] == 3
    assert plan["servers"] == 10


def test_a_row_exactly_at_its_budget_is_not_a_breach():
    from policies.bayes_power import row_breach_probability, select_caps

    x = np.asarray([[400.0, 300.0, 300.0]] * 10)[:, None, :]  # row 1000 W = budget
    assert row_breach_probability(x, 1000.0, np.full(3, np.inf), IDLE) == 0.0
    caps, p = select_caps(x, 1000.0, np.zeros(3), 0.0, idle_w=IDLE, max_w=PMAX)
    assert p == 0.0 and not np.isfinite(caps).any()


@pytest.mark.parametrize("target", [1.0, -0.1])
def test_planning_refuses_a_target_outside_0_1(target):
    from policies.bayes_power import plan_servers

    with pytest.raises(ValueError, match="target"):
        plan_servers(np.full((10, 2), 200.0), 1000.0, target)


def test_series_on_one_clock_are_aligned_by_timestamp_and_a_gap_holds_the_last_value():
    import pandas as pd

    from policies.bayes_power import aligned_power

    ts = np.arange(0.0, 110.0, 10.0)  # 0, 10, ..., 100 s
    b_ts = ts[ts != 50.0]  # b misses its sample at 50 s
    rows = pd.concat(
        [
            pd.DataFrame({"entity": "a", "metric": "power_w", "ts": ts, "value": 100.0 + ts}),
            pd.DataFrame({"entity": "b", "metric": "power_w", "ts": b_ts, "value": 500.0 + b_ts}),
        ]
    )
    wide = aligned_power(rows)
    assert wide.shape == (11, 2)
    np.testing.assert_array_equal(wide[:, 0], 100.0 + ts)
    # at 50 s b holds its 40 s value; after the gap it is back in step with a
    np.testing.assert_array_equal(wide[:, 1], 500.0 + np.where(ts == 50.0, 40.0, ts))


def test_runs_recorded_at_different_times_each_start_at_their_first_sample():
    import pandas as pd

    from policies.bayes_power import aligned_power

    a_ts, b_ts = np.arange(0.0, 100.0, 10.0), np.arange(5000.0, 5060.0, 10.0)  # 10 and 6
    rows = pd.concat(
        [
            pd.DataFrame({"entity": "a", "metric": "power_w", "ts": a_ts, "value": a_ts}),
            pd.DataFrame({"entity": "b", "metric": "power_w", "ts": b_ts, "value": b_ts}),
        ]
    )
    wide = aligned_power(rows)
    np.testing.assert_array_equal(wide, np.column_stack([a_ts[:6], b_ts]))


def test_a_budget_below_one_server_plans_no_server_and_no_breach():
    from policies.bayes_power import plan_servers

    out = plan_servers(np.full((10, 2), 200.0), 150.0, 0.01, seed=1)
    assert out["servers"] == 0 and out["servers_at_peak"] == 0
    assert out["p_breach"] == 0.0  # an empty row never breaches


def test_the_default_search_reaches_a_row_of_many_small_servers_and_one_large_one():
    from policies.bayes_power import plan_servers

    # 99 servers at 1 W and one at 1000 W; budget 100 W, target 0.5. A row of n servers
    # drawn from this pool breaches when it holds the large one: P = 1 - 0.99^n <= 0.5 up to
    # n = 68. The default upper end of the search (4 x budget / the smallest server's mean
    # = 400) leaves room for it.
    power = np.tile(np.r_[np.ones(99), 1000.0], (10, 1))  # (T=10, N=100)
    out = plan_servers(power, 100.0, 0.5, seed=3)
    assert abs(out["servers"] - 68) <= 6, out
    assert out["p_breach"] <= 0.5


def test_the_default_horizon_reaches_the_window_the_caps_govern():
    # window [now + delay, now + delay + step]; step 0 starts at now, so the last step it
    # touches is ceil((delay + step) / step) - 1, and one more is asked:
    # 1 s steps, 40 s delay -> ceil(41 / 1) + 1 = 42; 57 s steps -> ceil(97 / 57) + 1 = 3
    from policies.scenarios import power as contract
    from traces.replay.power import PowerScenario

    pol = BayesPower()
    assert pol.params["horizon"] is None
    delay = PowerScenario.defaults["delay_s"]
    assert delay == 40.0
    h100, _ = inputs(np.full(3, np.inf), delay_s=delay, step_s=1.0)
    genai, _ = inputs(np.full(3, np.inf), delay_s=delay, step_s=57.0)
    assert contract.horizon(h100, pol) == 42
    assert contract.horizon(genai, pol) == 3
    assert contract.horizon(h100, BayesPower(horizon=48)) == 48  # an explicit horizon wins


def test_the_lowest_priority_server_is_capped_even_when_another_would_cut_more():
    # s0 draws the most but has the higher priority: the cap goes to s1 (priority 0; s1 and
    # s2 tie on priority and reduction, the first in order is taken)
    spec, obs = power_inputs([300.0] * 3, servers=3, budget_w=1000.0, p_max_w=PMAX,
                             p_idle_w=IDLE, low_priority=[False, True, True])
    assert spec.priority.tolist() == [1.0, 0.0, 0.0]
    d = BayesPower(target_breach=0.10).decide(spec, obs, joint(4), 0.0)
    assert np.isfinite(d.action["caps"]).tolist() == [False, True, False], d.why


def test_forecast_indicators_must_match_the_servers_when_not_named_after_them():
    import dataclasses

    spec, obs = inputs(np.full(3, np.inf))
    spec = dataclasses.replace(spec, server_ids=("a", "b", "c"))  # s0..s2 read by position
    d = BayesPower(target_breach=0.10).decide(spec, obs, joint(4), 0.0)
    assert d.valid and np.isfinite(d.action["caps"]).sum() == 1
    two = Forecast(
        samples=joint(4).samples[:, :, :2], start=0.0, step=1.0, indicators=("s0", "s1"),
        model="hand",
    )
    with pytest.raises(ValueError, match="2 indicators for 3 servers"):
        BayesPower().decide(spec, obs, two, 0.0)


def test_the_planning_cli_answers_bad_input_with_exit_code_2(tmp_path, capsys):
    from policies.bayes_power import main

    path = tmp_path / "mem.csv"
    path.write_text("entity,metric,ts,value\na,mem_gb,0,1.0\na,mem_gb,1,2.0\n")
    rc = main([str(path), "--budget-w", "1000"])
    out = capsys.readouterr()
    assert rc == 2 and "no power_w or cpu_util series" in out.err and out.out == ""
