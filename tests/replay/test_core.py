"""run_replay and the ``tidewise replay`` command: report structure, plots, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from common.errors import InputError
from policies import registry
from service.cli import app
from traces.replay import core
from traces.replay.vm import VmScenario


def cli(*args):
    return CliRunner().invoke(app, ["replay", *map(str, args), "--no-progress"])


def test_cli_end_to_end_writes_report_and_plots(trace_csv, tmp_path):
    out = tmp_path / "out"
    r = cli("--trace", trace_csv, "--scenario", "vm", "--policy", "hpa,kpa,oracle",
            "--sweep", "--out", out, "--option", "boot_s=30", "--option", "capacity=4",
            "--seed", 3)
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert set(rep) == {"scenario", "trace", "config", "policies"}
    assert rep["scenario"] == "vm" and rep["trace"] == str(trace_csv)
    assert list(rep["policies"]) == ["hpa", "kpa", "oracle"]
    hpa_grid = registry.get("hpa", "vm").sweep_grid
    assert [e["params"]["target"] for e in rep["policies"]["hpa"]] == list(hpa_grid)
    assert len(rep["policies"]["oracle"]) == 1  # no sweep knob: one run
    for runs in rep["policies"].values():
        for e in runs:
            assert {"replica_seconds", "violation_rate", "unserved_fraction"} <= set(e["totals"])
    # the knob buys SLA with cost: the lowest target costs the most
    costs = [e["totals"]["replica_seconds"] for e in rep["policies"]["hpa"]]
    assert costs[0] == max(costs)
    cfg = rep["config"]
    assert cfg["scenario_options"]["boot_s"] == 30 and cfg["resolved"]["capacity"] == 4.0
    assert cfg["seed"] == 3 and cfg["sweep"] is True
    assert json.loads((out / "config.json").read_text())["resolved"]["steps"] == 600
    for f in ("cost_vs_sla.png", "timeline.png", "timeline.csv"):
        assert (out / f).stat().st_size > 1000, f
    tl = pd.read_csv(out / "timeline.csv")
    assert set(tl["policy"]) == {"hpa", "kpa", "oracle"}
    assert "hpa target=0.3: replica_seconds=" in r.output


def test_report_matches_a_direct_scenario_run_and_is_deterministic(trace_csv):
    a = core.run_replay(trace_csv, "vm", "hpa,static-peak", options={"capacity": 4}, seed=1)
    b = core.run_replay(trace_csv, "vm", ["hpa", "static-peak"], options={"capacity": 4},
                        seed=1)
    assert a == b
    import traces

    sc = VmScenario(capacity=4)
    direct = sc.run(registry.create("hpa", "vm"), sc.prepare(traces.load(trace_csv)))
    assert a["policies"]["hpa"][0]["totals"]["replica_seconds"] == \
        direct.totals["replica_seconds"]


@pytest.mark.parametrize(
    ("override", "options", "message"),
    [
        ({"--policy": "hpa,nope"}, [], "no policy 'nope' for scenario 'vm'"),
        ({"--scenario": "moon"}, [], "unknown scenario 'moon'"),
        ({}, ["boot=3"], "no option(s) ['boot']"),
        ({}, ["boot_s"], "expected key=value"),
        ({}, ["capacity=-1"], "capacity must be auto or > 0"),
        ({}, ["boot_s=soon"], "boot_s must be >= 0 seconds, got 'soon'"),
        ({}, ["metric=requests"], "metric 'requests' not in the trace"),
        ({"--format": "nope"}, [], "unknown trace format 'nope'"),
        ({}, ["hpa.tolerence=0.2"], "policy 'hpa' has no parameter(s) ['tolerence']"),
        ({}, ["kpa.target_util=0.5"], "policy 'kpa' is not among --policy ['hpa']"),
        ({}, ["hpa.target=2"], "target must be in (0, 1.5]"),
    ],
)
def test_bad_input_is_one_clear_line_and_exit_2(trace_csv, tmp_path, override, options,
                                                 message):
    out = tmp_path / "out"
    flags = {"--trace": trace_csv, "--scenario": "vm", "--policy": "hpa", "--out": out,
             **override}
    argv = [x for kv in flags.items() for x in kv]
    for o in options:
        argv += ["--option", o]
    r = cli(*argv)
    assert r.exit_code == 2
    assert message in r.output
    assert "Traceback" not in r.output
    assert not out.exists()  # nothing half-written


def test_unreadable_trace(tmp_path):
    out = tmp_path / "out"
    r = cli("--trace", tmp_path / "missing.csv", "--scenario", "vm", "--policy", "hpa",
            "--out", out)
    assert r.exit_code == 2 and "missing.csv: no such file or folder" in r.output
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01 not a trace \xff" * 50)
    r = cli("--trace", junk, "--scenario", "vm", "--policy", "hpa", "--out", out)
    assert r.exit_code == 2 and "junk.bin" in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_a_failed_run_leaves_an_existing_out_dir_untouched(trace_csv, tmp_path, monkeypatch):
    out = tmp_path / "out"
    core.run_replay(trace_csv, "vm", "oracle", out_dir=out, plots=False)
    before = (out / "report.json").read_text()
    calls = {"n": 0}
    real = VmScenario.run

    def flaky(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("boom")
        return real(self, *a, **kw)

    monkeypatch.setattr(VmScenario, "run", flaky)
    with pytest.raises(RuntimeError):
        core.run_replay(trace_csv, "vm", "hpa,kpa", out_dir=out)
    assert (out / "report.json").read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "trace.csv"]  # no temp dirs


def test_policy_parameters_from_options(trace_csv):
    rep = core.run_replay(trace_csv, "vm", "hpa,kpa", sweep=True,
                          options={"capacity": 4, "hpa.tolerance": 0.0, "kpa.sync_s": 15})
    assert all(e["params"]["tolerance"] == 0.0 for e in rep["policies"]["hpa"])
    assert [e["params"]["target"] for e in rep["policies"]["hpa"]] == list(
        registry.get("hpa", "vm").sweep_grid)
    kpa = rep["policies"]["kpa"][0]
    assert kpa["params"]["sync_s"] == 15 and kpa["totals"]["decisions"] == 40  # 600 s / 15
    assert rep["config"]["scenario_options"]["capacity"] == 4


def test_policy_all_runs_every_registered_policy(trace_csv):
    rep = core.run_replay(trace_csv, "vm", "all", options={"capacity": 4}, forecaster=None)
    assert list(rep["policies"]) == registry.names("vm")


def test_out_must_be_a_folder(trace_csv, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = cli("--trace", trace_csv, "--scenario", "vm", "--policy", "hpa", "--out", f)
    assert r.exit_code == 2 and "exists and is not a folder" in r.output
    assert f.read_text() == "x"


def test_an_unwritable_out_is_refused_before_the_replay_runs(trace_csv, tmp_path, monkeypatch):
    def must_not_run(*_args, **_kw):
        raise AssertionError("the replay ran before --out was checked")

    monkeypatch.setattr(VmScenario, "run", must_not_run)
    f = tmp_path / "file"
    f.write_text("x")
    r = cli("--trace", trace_csv, "--scenario", "vm", "--policy", "hpa", "--out", f / "sub")
    assert r.exit_code == 2, r.output
    assert f"error: {f / 'sub'}: cannot write the outputs there (" in r.output
    assert f.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == [
        "file", "trace.csv"]


def test_parse_options_types_and_errors():
    assert core.parse_options(["a=1", "b=0.5", "c=true", "d=None", "e=log"]) == {
        "a": 1, "b": 0.5, "c": True, "d": None, "e": "log"}
    with pytest.raises(InputError, match="--option #2: expected key=value"):
        core.parse_options(["a=1", "=3"])


def test_frame_input_and_no_output(trace_csv):
    import traces

    frame = traces.load(trace_csv)
    rep = core.run_replay(frame, "vm", "static-peak", sweep=True, options={"capacity": 4})
    grid = registry.get("static-peak", "vm").sweep_grid
    assert [e["params"]["quantile"] for e in rep["policies"]["static-peak"]] == list(grid)
    viol = [e["totals"]["violation_rate"] for e in rep["policies"]["static-peak"]]
    assert viol == sorted(viol, reverse=True) and viol[-1] <= viol[0]


def _functions_frame():
    rng = np.random.default_rng(5)
    inv = rng.poisson([0.3, 4.0, 30.0], size=(120, 3)).astype(float)  # (T, F)
    ents = ["f0", "f1", "f2"]
    f = pd.DataFrame({"entity": np.repeat(ents, 120), "metric": "invocations",
                      "ts": np.tile(60.0 * np.arange(120), 3), "value": inv.T.ravel()})
    f.attrs.update(step=60.0, kind="function", static={
        e: {"duration_ms": d, "memory_mb": 256.0} for e, d in zip(ents, (200.0, 900.0, 3000.0),
                                                                  strict=True)})
    return f


def _servers_frame():
    rng = np.random.default_rng(6)
    t = 300.0 * np.arange(200)
    f = pd.concat([pd.DataFrame({"entity": f"vm{i}", "metric": "cpu_util", "ts": t,
                                 "value": np.clip(40 + 30 * rng.standard_normal(t.size), 0, 100)})
                   for i in range(6)], ignore_index=True)
    f.attrs.update(step=300.0, kind="vm")
    return f


@pytest.mark.parametrize(("scenario", "make"), [("serverless", _functions_frame),
                                                ("power", _servers_frame)])
def test_the_driver_is_scenario_agnostic(scenario, make, tmp_path):
    from traces.replay.base import get_scenario

    try:
        sc_cls = get_scenario(scenario)
    except KeyError:
        pytest.skip(f"scenario {scenario!r} not written yet")
    names = [n for n in registry.names(scenario)
             if not registry.get(n, scenario).needs_forecast]
    out = tmp_path / "out"
    rep = core.run_replay(make(), scenario, names, sweep=True, out_dir=out)
    assert list(rep["policies"]) == names
    for name in names:
        cls = registry.get(name, scenario)
        assert len(rep["policies"][name]) == max(1, len(cls.sweep_grid) if cls.sweep_param
                                                 else 1)
        for e in rep["policies"][name]:
            assert {sc_cls.cost_figure, sc_cls.sla_figure} <= set(e["totals"])
    assert json.loads((out / "report.json").read_text()) == rep
    for f in ("cost_vs_sla.png", "timeline.png", "config.json"):
        assert (out / f).stat().st_size > 500


def test_a_policy_without_its_own_forecaster_gets_the_daemons_scenario_default():
    from models.growth_bootstrap import GrowthBootstrapPredictor
    from policies.pipeline import forecaster_for

    class Plain:  # needs a forecast, brings no make_forecaster
        needs_forecast = True
        scenario = "power"

    class Elsewhere(Plain):
        scenario = "no-such-scenario"

    fc = forecaster_for(Plain(), 0)
    # the daemon's power forecaster, a registered model: no daily season, one hour of behaviour
    assert fc.name == "growth-bootstrap" and isinstance(fc.predictor, GrowthBootstrapPredictor)
    cfg = fc.predictor.config
    assert (cfg["space"], cfg["season_s"], cfg["window_s"], cfg["offset_decay"]) == (
        "linear", 0.0, 3600.0, 0.9)
    assert forecaster_for(Elsewhere(), 0) is None
