"""The power scenario on a real H100 training log (skipped when ../shared/data is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest

from policies import registry
from traces.replay.power import PowerScenario

LOG = (Path(__file__).resolve().parents[3] / "shared/data/gpu-power-h100-training-wilkins"
       / "power-trace_2025-07-27-00-47-08.csv.gz")
pytestmark = pytest.mark.skipif(not LOG.is_file(), reason=f"public trace not present at {LOG}")


@pytest.fixture(scope="module")
def runs():
    import traces

    frame = traces.load(LOG, step=1.0)
    sc = PowerScenario(oversubscription=1.5)
    data = sc.prepare(frame)
    return data, {p: sc.run(registry.create(p, "power"), data).totals
                  for p in ("static-peak", "polca", "oracle")}


def test_bounds_hold_on_a_real_row(runs):
    data, res = runs
    assert data.resolved["servers"] == 12 and data.resolved["budget_servers"] == 8
    peak, polca, oracle = res["static-peak"], res["polca"], res["oracle"]
    # the 8 GPUs at their own peak cannot exceed a budget of 8 x the highest power
    assert peak["servers"] == 8 and peak["breach_steps"] == 0
    assert peak["performance_lost"] == 0
    # the oversubscribed row would breach without control; the oracle never does and loses
    # the least performance; POLCA, 40 s late, sits in between
    assert oracle["demand_breach_steps"] > 0
    assert oracle["breach_steps"] == 0
    assert 0 < oracle["performance_lost"] <= polca["performance_lost"]
    assert polca["breach_steps"] <= polca["demand_breach_steps"]
