"""The vm-gap bench helpers (docs/vm-gap.md): the online row's parameters and the tail bound."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from bench import forecasters, vm_tail_bound
from common.errors import ConfigError

SLICE = Path(__file__).resolve().parents[2] / "traces" / "data" / (
    "alibaba2018_machine_usage_day_1_grouped_10_seconds.csv.gz")


def test_online_param_overrides_the_vm_default_and_keeps_the_rest():
    from policies.pipeline import DEFAULT_FORECASTERS

    fc = forecasters.online_forecaster(3, {"neighbours": 0.3})
    cfg = fc.predictor.config
    assert cfg["neighbours"] == 0.3
    assert cfg["space"] == DEFAULT_FORECASTERS["vm"][1]["space"] == "log"
    assert fc.seed == 3 and fc.name == DEFAULT_FORECASTERS["vm"][0]
    with pytest.raises(ConfigError):
        forecasters.online_forecaster(0, {"no_such_knob": 1})


def _head(tmp_path, rows: int):
    """The header and the first ``rows`` rows of the bundled datacenter day, as a trace file."""
    lines = gzip.open(SLICE, "rt").read().splitlines()[: rows + 1]
    path = tmp_path / "machine_usage_day_1_grouped_10_seconds.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_at_miss_interpolates_the_cost_at_a_miss_rate():
    miss = np.array([0.04, 0.02, 0.0, 0.01])  # unsorted, as the levels give them
    cost = np.array([1.0, 1.1, 1.5, 1.3])
    assert vm_tail_bound.at_miss(miss, cost, 0.015) == pytest.approx(1.2)
    assert vm_tail_bound.at_miss(miss, cost, 0.01) == pytest.approx(1.3)
    assert vm_tail_bound.at_miss(miss[:2], cost[:2], 0.01) is None  # no level that low


def test_tail_bound_table_on_a_slice(tmp_path, capsys):
    # the first 600 rows (100 minutes at 10 s) of the bundled datacenter day
    path = _head(tmp_path, 600)
    vm_tail_bound.main([str(path), "--rate", "0.05", "--rate", "0.2"])
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:4]]
            for line in out.splitlines() if line.startswith("| ") and "---" not in line}
    assert "288 decisions on the scored half, step 10 s" in out
    online = rows["online (the scenario's online forecaster)"]
    uncond = rows["growth quantile, in-sample"]
    # 48 minutes of scored half leave under 200 decisions a bin: one bin, the unconditional
    assert rows["growth quantile by hour phase (1 bins), in-sample"] == uncond
    # the in-sample quantile always reaches 5 % misses; a cold online forecaster has too few
    # origins to (its widest level still misses more often); both pay headroom for 20 %
    assert online[0] == "n/a" and float(uncond[0]) > float(uncond[1]) >= 1.0
    assert float(online[1]) >= 1.0


def test_choose_vm_backtests_on_the_history_and_picks(tmp_path, capsys):
    from bench import choose_vm

    # 1,200 rows (200 minutes at 10 s): the history is the first half, its second quarter the
    # backtest; one candidate within any SLA is the pick
    path = _head(tmp_path, 1200)
    choose_vm.main([str(path), "--candidates", "online", "--sla", "0.1"])
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("online: at knob 0.1: ")
    assert len(first.split("sweep ")[1].split(", ")) == 7  # bayes's whole sweep grid
    assert out.splitlines()[-1].startswith("pick (service.choosing.pick): online;")
    with pytest.raises(SystemExit, match="sweep grid"):
        choose_vm.main([str(path), "--candidates", "online", "--sla", "0.03"])


def test_learned_rows_see_the_entities_and_the_window_peak():
    import pandas as pd

    # two entities on a 300-s grid; entity b misses the first part (0 there, as the scenario)
    ts = np.arange(40) * 300.0
    rows = [("a", t, 1.0 + i % 3) for i, t in enumerate(ts)]
    rows += [("b", t, 10.0 + (i % 5)) for i, t in enumerate(ts) if i >= 4]
    frame = pd.DataFrame(rows, columns=["entity", "ts", "value"]).assign(
        metric="cpu_util", kind="vm")[["entity", "metric", "ts", "value"]]
    m = vm_tail_bound._matrix(frame, 300.0, ["a", "b", "c"])
    assert m.shape == (40, 3) and not np.isnan(m).any()
    assert m[:4, 1].tolist() == [0.0] * 4 and (m[:, 2] == 0).all()
    # the demand metric's units (here cpu_util scaled as the scenario scales it), per entity
    assert m[5, 1] / m[4, 1] == pytest.approx(10 / 14) and m[1, 0] / m[0, 0] == pytest.approx(2)
    d = m.sum(axis=1)
    for per_entity, width in ((False, 15), (True, 15 + 6)):
        x, y, base, need = vm_tail_bound._examples(m, 300.0, 60.0, 15.0, 0.0, per_entity)
        assert x.shape == (len(need), width)
        c = 0.01 * np.abs(d).mean()
        np.testing.assert_allclose(np.exp(base + y) - c, need)
        # the first decision of step 12 needs step 12's demand; the last one also step 13's
        assert need[0] == d[12] and need[19] == max(d[12], d[13])
