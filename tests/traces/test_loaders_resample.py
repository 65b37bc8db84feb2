"""Resampling rules (sum for counts, mean for levels, max for maxima) and the frame helpers."""

from __future__ import annotations

import numpy as np

import traces
from traces.loaders._common import aggregation, resample


def long_csv(write, rows, name="t.csv", kind="vm"):
    text = "entity,metric,ts,value,kind\n" + "".join(f"{e},{m},{t},{v},{kind}\n"
                                                     for e, m, t, v in rows)
    return write(name, text)


def values(frame, entity, metric):
    part = frame[(frame.entity == entity) & (frame.metric == metric)]
    return part.ts.tolist(), part.value.tolist()


def test_aggregation_per_metric():
    assert aggregation("requests") == "sum" and aggregation("invocations") == "sum"
    assert aggregation("tokens_in") == "sum" and aggregation("cold_starts") == "sum"
    assert aggregation("cpu_util") == "mean" and aggregation("power_w") == "mean"
    assert aggregation("cpu_util_max") == "max"
    assert aggregation("load") == "mean"  # unknown names are levels


def test_counts_are_summed_with_zero_bins(write):
    path = long_csv(write, [("s", "requests", 0, 1), ("s", "requests", 2.5, 1),
                            ("s", "requests", 3.0, 2), ("s", "requests", 7, 1)])
    f = traces.load(path, step=2)
    assert values(f, "s", "requests") == ([0.0, 2.0, 4.0, 6.0], [1.0, 3.0, 0.0, 1.0])
    assert f.attrs["step"] == 2.0 and f.attrs["kind"] == "vm"


def test_levels_are_averaged_and_gaps_stay_gaps(write):
    path = long_csv(write, [("vm", "cpu_util", 0, 10), ("vm", "cpu_util", 1, 20),
                            ("vm", "cpu_util", 9, 40), ("vm2", "cpu_util", 5, 7)])
    f = traces.load(path, step=4)
    assert values(f, "vm", "cpu_util") == ([0.0, 8.0], [15.0, 40.0])
    assert values(f, "vm2", "cpu_util") == ([4.0], [7.0])  # bins align to multiples of step


def test_upsampling_holds_levels_and_spreads_counts(write):
    path = long_csv(write, [("vm", "cpu_util", 0, 10), ("vm", "cpu_util", 60, 20),
                            ("fn", "invocations", 0, 60), ("fn", "invocations", 60, 30)])
    f = traces.load(path)
    assert f.attrs["step"] == 60.0
    g = traces.load(path, step=20)
    assert values(g, "vm", "cpu_util")[1] == [10.0] * 3 + [20.0] * 3
    ts, inv = values(g, "fn", "invocations")
    assert ts == [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]
    assert inv == [20.0] * 3 + [10.0] * 3
    assert sum(inv) == 90.0  # totals preserved


def test_same_step_is_identity_and_static_attrs_survive(write):
    inv = write("x_inv.csv", "HashFunction,HashOwner,HashApp,1_minute,2_minute\nf,o,a,3,4\n")
    write("x_run.csv", "HashOwner,HashApp,HashFunction,Average\no,a,f,250\n")
    f = traces.load(inv)
    g = traces.load(inv, step=60)
    assert g.equals(f)
    h = resample(f, 3600)
    assert values(h, "f", "invocations") == ([0.0], [7.0])
    assert h.attrs["static"]["f"]["duration_ms"] == 250.0
    assert h.attrs["format"] == "azure-functions-2019" and h.attrs["step"] == 3600.0


def test_wide_pivot(write):
    path = long_csv(write, [("a", "cpu_util", 0, 1), ("a", "cpu_util", 10, 2),
                            ("b", "cpu_util", 10, 5)])
    w = traces.wide(traces.load(path))
    assert list(w.index) == [0.0, 10.0]
    assert w[("a", "cpu_util")].tolist() == [1.0, 2.0]
    assert np.isnan(w[("b", "cpu_util")].iloc[0]) and w[("b", "cpu_util")].iloc[1] == 5.0


def test_static_attrs_are_shared_not_deep_copied(write):
    # pandas deep-copies attrs on each operation; the per-entity table must not be
    # copied each time (that made a groupby over 670 functions 40x slower)
    import copy

    inv = write("x_inv.csv", "HashFunction,HashOwner,HashApp,1_minute,2_minute\nf,o,a,3,4\n")
    f = traces.load(inv)
    part = f[f.metric == "invocations"].head(1)
    assert part.attrs["static"] is f.attrs["static"]
    assert part.attrs["static"]["f"]["app"] == "a"
    assert copy.deepcopy(f.attrs)["units"] is not f.attrs["units"]  # small attrs still copied
