"""The replay summary the CLI prints: every figure with its unit, in human numbers."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from service.cli import app
from traces.cli import forecaster_line, summary_lines
from traces.replay.serverless import ServerlessScenario
from traces.replay.vm import VmScenario


def test_summary_lines_give_each_figure_its_unit():
    rep = {"scenario": "serverless",
           "config": {"summary_figures": ["wasted_memory_gb_s", "cold_start_rate"],
                      "units": dict(ServerlessScenario.units)},
           "policies": {"keepalive-10m": [
               {"params": {"keepalive_min": 10},
                "totals": {"wasted_memory_gb_s": 1_035_930.0, "cold_start_rate": 0.0172}}]}}
    assert summary_lines(rep, sweep=True) == [
        "keepalive-10m keepalive_min=10: wasted_memory_gb_s=1.04 M GB·s, cold_start_rate=1.72 %"]
    assert summary_lines(rep, sweep=False) == [
        "keepalive-10m: wasted_memory_gb_s=1.04 M GB·s, cold_start_rate=1.72 %"]


def test_the_forecaster_line_has_dates_units_and_plurals():
    info = {"name": "model:last", "scored_span": [1_700_000_000, 1_700_003_600],
            "scored": {"crps": 1234.5678, "mse": 2.5e6, "coverage_90": 0.9, "windows": 1}}
    assert forecaster_line(info) == (
        "forecaster model:last: scored 2023-11-14 22:13:20 UTC .. 2023-11-14 23:13:20 UTC, "
        "crps=1.235 k mse=2.5 M (the forecast series' units, squared for mse) "
        "coverage_90=90 % over 1 window")
    info["scored"]["coverage_upper_99"] = 0.995
    assert forecaster_line(info).endswith("coverage_90=90 % coverage_upper_99=99.5 % over 1 window")


def test_replay_prints_units_on_every_figure(trace_csv, tmp_path):
    r = CliRunner().invoke(app, ["replay", "--trace", str(trace_csv), "--scenario", "vm",
                                 "--policy", "hpa,oracle", "--out", str(tmp_path / "o"),
                                 "--option", "capacity=4", "--no-progress"])
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if not ln.startswith("wrote")]
    assert [ln.split(":")[0] for ln in lines] == ["hpa", "oracle"]
    for ln in lines:
        figures = dict(re.findall(r"(\w+)=([^,]+)", ln.split(": ", 1)[1]))
        assert list(figures) == list(VmScenario.summary_figures)
        for name, text in figures.items():
            unit = VmScenario.units[name]
            assert text.endswith(f" {unit}"), (name, text)
            assert "e+" not in text and "e-" not in text
