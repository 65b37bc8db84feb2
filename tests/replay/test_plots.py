"""Replay plots, inspected as matplotlib Figures: units, knob labels, shared scales, lines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.units import human
from policies import registry
from traces.replay import core, plots
from traces.replay.base import get_scenario
from traces.replay.serverless import ServerlessScenario
from traces.replay.vm import VmScenario


def _serverless_report():
    runs = [{"params": {"keepalive_min": k}, "totals": {"wasted_memory_gb_s": 2.0e5 * k,
                                                        "cold_start_rate": 0.05 / k}}
            for k in (1, 5, 10)]
    return {"scenario": "serverless", "config": {"units": dict(ServerlessScenario.units)},
            "policies": {"keepalive-10m": runs,
                         "oracle": [{"params": {}, "totals": {"wasted_memory_gb_s": 9.0e4,
                                                              "cold_start_rate": 0.0}}]}}


def _tick_texts(axis):
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text()]


def test_cost_vs_sla_has_units_human_ticks_and_knob_values_beside_points():
    fig = plots.cost_vs_sla(_serverless_report(), "wasted_memory_gb_s", "cold_start_rate")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "wasted memory [GB·s]"
    assert ax.get_xlabel() == "cold start rate [%]"
    fig.canvas.draw()
    assert ax.yaxis.get_offset_text().get_text() == ""  # no "1e6" above the axis
    assert any(t.endswith(" M") for t in _tick_texts(ax.yaxis))  # 1 M, 1.5 M...
    assert not any("e" in t for t in _tick_texts(ax.yaxis) + _tick_texts(ax.xaxis))
    # x in percent: 5 % of cold starts is the largest point
    assert max(float(t) for t in _tick_texts(ax.xaxis)) >= 5
    labels = {t.get_text(): t.xy for t in ax.texts}
    assert labels == {"keepalive_min=1": (0.05, 2.0e5), "keepalive_min=5": (0.01, 1.0e6),
                      "keepalive_min=10": (0.005, 2.0e6)}  # the oracle's one run: no label
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "keepalive-10m (keepalive_min)", "oracle"]


def test_a_replayed_sweep_labels_every_grid_point(trace_csv):
    rep = core.run_replay(trace_csv, "vm", "hpa,oracle", sweep=True, options={"capacity": 4})
    fig = plots.cost_vs_sla(rep, "replica_seconds", "violation_rate")
    ax = fig.axes[0]
    grid = registry.get("hpa", "vm").sweep_grid
    assert sorted(t.get_text() for t in ax.texts) == sorted(f"target={human(v)}" for v in grid)
    assert ax.get_ylabel() == "replica seconds [replica·s]"
    assert ax.get_xlabel() == "violation rate [%]"


def _vm_timelines():
    t = np.arange(0.0, 7200.0, 60.0)
    out = {}
    for name, scale in (("hpa", 1.0), ("oracle", 3.0)):  # different heights per panel
        d = scale * 1.0e6 * (1 + 0.5 * np.sin(t / 900.0))
        req = np.ceil(d / 2.5e5) * 2.5e5
        ready = np.concatenate([req[:2], req[:-2]])  # ready lags requested by two steps
        out[name] = pd.DataFrame({"t_s": t, "demand": d, "capacity_ready": ready,
                                  "capacity_requested": req})
    return out


def test_timeline_panels_share_their_scale_and_show_capacity_ready():
    units = {**VmScenario.units, "demand": "cores", "capacity_ready": "cores",
             "capacity_requested": "cores"}
    tls = _vm_timelines()
    fig = plots.timeline(tls, units=units, title="vm", labels={"hpa": "hpa target=0.7"})
    a, b = fig.axes[:2]
    assert a.get_shared_y_axes().joined(a, b) and a.get_ylim() == b.get_ylim()
    assert a.get_ylim()[1] >= tls["oracle"]["capacity_requested"].max()  # the taller panel
    assert a.get_ylabel() == "hpa target=0.7\n[cores]" and b.get_ylabel() == "oracle\n[cores]"
    assert b.get_xlabel() == "time from trace start [h]"
    fig.canvas.draw()
    assert a.yaxis.get_offset_text().get_text() == ""
    assert any(t.endswith(" M") for t in _tick_texts(a.yaxis))
    for ax, name in ((a, "hpa"), (b, "oracle")):
        lines = {ln.get_label(): ln for ln in ax.get_lines()}
        ready, req = lines["capacity_ready"], lines["capacity_requested"]
        assert ready.get_visible() and req.get_visible()
        np.testing.assert_array_equal(ready.get_ydata(), tls[name]["capacity_ready"])
        np.testing.assert_array_equal(req.get_ydata(), tls[name]["capacity_requested"])
        # ready is drawn over requested, thinner, so where they coincide both show
        assert ready.get_zorder() > req.get_zorder()
        assert req.get_linewidth() > ready.get_linewidth() and req.get_alpha() < 1


def test_timeline_columns_of_another_unit_share_one_right_axis_across_panels():
    t = np.arange(0.0, 3600.0, 60.0)
    tls = {name: pd.DataFrame({"t_s": t, "concurrency": k * 50 + 10 * np.sin(t / 300),
                               "warm": np.full(t.size, k * 60.0),
                               "cold_starts": np.full(t.size, 1000.0 * k)})
           for name, k in (("keepalive-10m", 1), ("oracle", 2))}
    fig = plots.timeline(tls, units=dict(ServerlessScenario.units))
    left, twins = fig.axes[:2], fig.axes[2:]
    assert len(twins) == 2
    assert twins[0].get_shared_y_axes().joined(twins[0], twins[1])
    assert all(tw.get_ylabel() == "[cold starts]" for tw in twins)
    assert all(ax.get_ylabel().endswith("[instances]") for ax in left)
    assert [ln.get_label() for ln in twins[0].get_lines()] == ["cold_starts (right)"]
    assert {ln.get_label() for ln in left[0].get_lines()} == {"concurrency", "warm"}


@pytest.mark.parametrize("name", ["vm", "serverless", "power"])
def test_every_printed_and_plotted_figure_has_a_unit(name):
    sc = get_scenario(name)
    figures = {sc.cost_figure, sc.sla_figure, *getattr(sc, "summary_figures", ())}
    assert figures <= set(sc.units), figures - set(sc.units)
    assert all(sc.units[f] for f in figures)


def test_a_replay_report_carries_the_units_of_its_figures_and_timeline(trace_csv, tmp_path):
    rep = core.run_replay(trace_csv, "vm", "hpa", options={"capacity": 4},
                          out_dir=tmp_path / "out")
    units = rep["config"]["units"]
    tl = pd.read_csv(tmp_path / "out" / "timeline.csv")
    for col in [c for c in tl.columns if c not in ("t_s", "policy")]:
        assert units[col], col
    assert set(rep["policies"]["hpa"][0]["totals"]) <= set(units)
