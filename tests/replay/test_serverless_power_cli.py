"""`tidewise replay --scenario serverless|power` end to end on tiny files, hand-checked."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from service.cli import main


def cli(args: list[str]) -> int:
    """Run the CLI as the console script does; return its exit code."""
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def _write_functions(folder):
    """An Azure Functions 2019 triple: 2 functions x 6 minutes (the published layout)."""
    ids = ["fa", "fb"]
    inv = pd.DataFrame({"HashFunction": ids, "HashOwner": ids, "HashApp": ids})
    counts = np.array([[2, 0, 0, 1, 0, 0], [1, 1, 0, 0, 0, 3]])  # (F, T)
    for j in range(6):
        inv[f"{j + 1}_minute"] = counts[:, j]
    inv.to_csv(folder / "t_inv.csv", index=False)
    pd.DataFrame({"HashOwner": ids, "HashApp": ids, "HashFunction": ids,
                  "Average": [30_000, 90_000], "Count": [3, 5], "Minimum": [1, 1],
                  "Maximum": [1, 1]}).to_csv(folder / "t_run.csv", index=False)
    pd.DataFrame({"HashOwner": ids, "HashApp": ids, "SampleCount": [1, 1],
                  "AverageAllocatedMb": [100, 200]}).to_csv(folder / "t_mem.csv", index=False)


def test_serverless_replay_end_to_end(tmp_path, capsys):
    _write_functions(tmp_path)
    out = tmp_path / "out"
    assert cli(["replay", "--trace", str(tmp_path / "t_inv.csv"), "--scenario", "serverless",
                "--policy", "keepalive-10m,oracle,static-peak", "--out", str(out),
                "--no-progress"]) == 0
    rep = json.loads((out / "report.json").read_text())
    ka = rep["policies"]["keepalive-10m"][0]["totals"]
    # fa: c = 1 0 0 1 0 0 (2 x 30 s -> 1); fb: c = 2 2 0 0 0 5 (90 s -> 2; 3 x 90 s -> 5)
    # keep-alive 10: fa w = 0 1 1 1 1 1 -> cold 1 (t0), idle 4 min x 100 MB
    #                fb w = 0 2 2 2 2 2 -> cold 2 (t0) + 3 (t5), idle 2+2+2 = 6 min x 200 MB
    assert ka["invocations"] == 8 and ka["cold_starts"] == 6
    assert ka["wasted_memory_gb_s"] == pytest.approx((4 * 100 + 6 * 200) * 60 / 1024)
    assert rep["policies"]["oracle"][0]["totals"]["cold_starts"] == 0
    # static peak: fa 1 x 6 - 2 = 4 idle, fb 5 x 6 - 9 = 21 idle instance-minutes
    assert rep["policies"]["static-peak"][0]["totals"]["wasted_memory_gb_s"] == pytest.approx(
        (4 * 100 + 21 * 200) * 60 / 1024)
    assert {"report.json", "timeline.csv", "timeline.png", "cost_vs_sla.png"} <= {
        p.name for p in out.iterdir()}


def _write_long(path):
    util = np.array([[100, 50], [100, 100], [50, 100], [0, 0]], dtype=float)  # (T, S)
    rows = [{"entity": f"m{s}", "metric": "cpu_util", "ts": 60.0 * t, "value": util[t, s]}
            for s in range(2) for t in range(4)]
    pd.DataFrame(rows).to_csv(path, index=False)


def test_power_replay_end_to_end(tmp_path):
    trace = tmp_path / "row.csv"
    _write_long(trace)
    out = tmp_path / "out"
    assert cli(["replay", "--trace", str(trace), "--scenario", "power", "--policy",
                "polca,oracle,static-peak", "--option", "servers=3", "--option", "delay_s=0",
                "--out", str(out), "--no-progress"]) == 0
    rep = json.loads((out / "report.json").read_text())
    pol = rep["policies"]["polca"][0]["totals"]
    # the row of tests/replay/test_power_model.py: demand 700, 700, 800, 500 W, budget 600 W
    assert pol["servers"] == 3 and pol["breach_steps"] == 2
    assert pol["performance_lost"] == pytest.approx(450 / 2700)
    orc = rep["policies"]["oracle"][0]["totals"]
    assert orc["breach_steps"] == 0 and orc["performance_lost"] == pytest.approx(400 / 2700)
    assert rep["policies"]["static-peak"][0]["totals"]["servers"] == 2
    assert rep["config"]["resolved"]["budget_w"] == 600.0


def test_bad_power_option_is_one_clear_line(tmp_path, capsys):
    trace = tmp_path / "row.csv"
    _write_long(trace)
    code = cli(["replay", "--trace", str(trace), "--scenario", "power", "--policy", "polca",
                "--option", "servers=1", "--out", str(tmp_path / "o"), "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err
    assert "servers (1) must be >= budget_servers (2)" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
