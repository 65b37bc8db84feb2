"""``tidewise evaluate`` end to end on a small synthetic CSV, and its bad-input errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from service.cli import main
from tests.models.conftest import make_series

N_ROWS = 300


def _write_csv(path, n=N_ROWS):
    s = make_series(n)
    df = pd.DataFrame(s.values, columns=list(s.indicators))
    df.insert(0, "date", pd.to_datetime(s.ts, unit="s").strftime("%Y-%m-%d %H:%M:%S"))
    df.to_csv(path, index=False)
    return df


def _run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


TINY_SET = [
    "--set",
    "harmony.max_epochs=1",
    "--set",
    "harmony.d_model=8",
    "--set",
    "harmony.n_heads=2",
    "--set",
    "harmony.d_ff=16",
    "--set",
    "harmony.context_dim=8",
    "--set",
    "harmony.flow_hidden=8",
    "--set",
    "quantile-gbm.max_iter=3",
]


def test_evaluate_end_to_end(tmp_path, capsys):
    csv = tmp_path / "c.csv"
    df = _write_csv(csv)
    out = tmp_path / "out"
    code, stdout, err = _run(
        [
            "evaluate",
            "--data",
            str(csv),
            "--context",
            "24",
            "--horizon",
            "2",
            "--models",
            "last,window-mean,quantile-gbm,harmony",
            "--out",
            str(out),
            "--no-progress",
            *TINY_SET,
        ],
        capsys,
    )
    assert code == 0, err
    assert "harmony" in stdout and "CRPS" in stdout
    rep = json.loads((out / "report.json").read_text())
    assert set(rep["models"]) == {"last", "window-mean", "quantile-gbm", "harmony"}
    keys = {"mse", "mae", "crps", "wql_0.1", "wql_0.5", "wql_0.9", "wql_mean", "coverage_90"}
    for entry in rep["models"].values():
        assert keys <= set(entry["average"])
        assert set(entry["per_indicator"]) == {"load", "cpu_util", "net_in"}
        assert keys <= set(entry["per_indicator"]["load"])
    n_test = int(N_ROWS * 0.2) - 2 + 1  # windows whose 2 target rows lie in the test split
    z = np.load(out / "forecasts.npz")
    assert z["y_true"].shape == (n_test, 2, 3)
    assert z["samples"].shape == (n_test, 100, 2, 3)
    assert z["samples__harmony"].shape == (n_test, 100, 2, 3)
    assert list(z["indicators"]) == ["load", "cpu_util", "net_in"]
    # y_true is the MinMax-scaled test data (scaler fitted on the first 70% of rows)
    vals = df[["load", "cpu_util", "net_in"]].to_numpy()
    tr = vals[: int(N_ROWS * 0.7)]
    scaled = (vals - tr.min(0)) / (tr.max(0) - tr.min(0))
    np.testing.assert_allclose(z["y_true"][-1, -1], scaled[-1], rtol=1e-5)
    # the metrics in the report are those of the stored samples
    from models.metrics import evaluate_samples

    r = evaluate_samples(
        z["samples__last"].astype(float), z["y_true"].astype(float), list(z["indicators"])
    )
    assert rep["models"]["last"]["average"]["mse"] == pytest.approx(r["average"]["mse"], rel=1e-4)


def test_online_models_are_evaluated_by_name(tmp_path, capsys):
    csv = tmp_path / "c.csv"
    _write_csv(csv)
    out = tmp_path / "out"
    code, stdout, err = _run(
        ["evaluate", "--data", str(csv), "--context", "48", "--horizon", "2", "--models",
         "growth-bootstrap,intermittent-count,window-mean", "--out", str(out), "--no-progress",
         "--set", "growth-bootstrap.season_s=0"],
        capsys,
    )
    assert code == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert list(rep["models"]) == ["growth-bootstrap", "intermittent-count", "window-mean"]
    for name in ("growth-bootstrap", "intermittent-count"):
        assert name in stdout
        per = rep["models"][name]["per_dataset"]["c"]
        assert per["fallbacks"] == 0 and per["windows"] == int(N_ROWS * 0.2) - 1
        assert 0 < rep["models"][name]["average"]["crps"] < 1  # scaled units
    z = np.load(out / "forecasts.npz")
    assert z["samples__intermittent-count"].shape == (int(N_ROWS * 0.2) - 1, 100, 2, 3)


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    code, _, err = _run(
        [
            "evaluate",
            "--data",
            str(tmp_path / "nope.csv"),
            "--context",
            "5",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 2 and "nope.csv: no such file or folder" in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bad_cell_names_row_and_column(tmp_path, capsys):
    csv = tmp_path / "c.csv"
    df = _write_csv(csv)
    df["cpu_util"] = df["cpu_util"].astype(object)
    df.loc[10, "cpu_util"] = "oops"
    df.to_csv(csv, index=False)
    code, _, err = _run(
        [
            "evaluate",
            "--data",
            str(csv),
            "--context",
            "5",
            "--models",
            "last",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 2 and "row 12, column cpu_util" in err and "'oops'" in err
    assert not (tmp_path / "o" / "report.json").exists()


def test_unknown_model_and_too_short_data(tmp_path, capsys):
    csv = tmp_path / "c.csv"
    _write_csv(csv, n=40)
    code, _, err = _run(
        [
            "evaluate",
            "--data",
            str(csv),
            "--context",
            "5",
            "--models",
            "nope",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 2 and "unknown model(s) ['nope']" in err
    code, _, err = _run(
        [
            "evaluate",
            "--data",
            str(csv),
            "--context",
            "30",
            "--models",
            "last",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 2 and "too few" in err
    assert not (tmp_path / "o").exists()


def test_no_date_column(tmp_path, capsys):
    csv = tmp_path / "c.csv"
    pd.DataFrame({"a": [1, 2, 3]}).to_csv(csv, index=False)
    code, _, err = _run(
        [
            "evaluate",
            "--data",
            str(csv),
            "--context",
            "2",
            "--models",
            "last",
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ],
        capsys,
    )
    assert code == 2 and ("date" in err or "format" in err)


def test_long_frame_is_aligned_filled_and_sparse_entities_dropped():
    from models.evaluate import _from_long

    rows = []
    for k in range(10):
        if k != 4:  # one missing row for entity a: filled from the previous row
            rows += [("a", "cpu_util", 60.0 * k, float(k)), ("a", "mem_util", 60.0 * k, 1.0)]
        if k < 5:  # entity b misses half of its grid: dropped
            rows.append(("b", "cpu_util", 120.0 * k, 1.0))
    rows.append(("b", "mem_util", 540.0, 1.0))
    frame = pd.DataFrame(rows, columns=["entity", "metric", "ts", "value"])
    frame.attrs["step"] = 60.0
    ds = _from_long(frame, "x", "x.csv")
    assert [s.entity for s in ds.series] == ["a"]
    assert ds.notes["dropped_entities"] == ["b"] and ds.notes["filled_cells"] == 2
    a = ds.series[0]
    assert a.indicators == ("cpu_util", "mem_util") and len(a) == 10
    assert a.values[4, 0] == 3.0  # forward filled


def test_help_names_the_model_list_and_renders_units(capsys):
    """`--help` promised `--list-models`; it exists, and bracketed units are printed as text."""
    from models.base import available_models

    code, out, _ = _run(["evaluate", "--list-models"], capsys)
    assert code == 0 and out.split() == available_models()
    code, out, _ = _run(["evaluate", "--help"], capsys)
    assert code == 0 and "--list-models" in out
    assert "Context length L [rows]." in " ".join(out.split())



def test_models_available_lists_every_model_with_a_line_about_it():
    from typer.testing import CliRunner

    from models.base import available_models
    from service.cli import app

    r = CliRunner().invoke(app, ["models", "available"])
    assert r.exit_code == 0, r.output
    rows = [ln.split(None, 1) for ln in r.output.splitlines()]
    assert [n for n, _ in rows] == available_models()
    assert all(len(about) > 10 and "``" not in about for _, about in rows)
    assert "models available" in CliRunner().invoke(app, ["train", "--help"]).output


def test_the_evaluation_table_says_its_units():
    from models.cli import evaluation_table

    avg = {"mse": 0.01234, "mae": 0.05, "crps": 0.04, "wql_mean": 0.03, "coverage_90": 0.912}
    rep = {"models": {"harmony": {"average": avg, "fit_seconds_mean": 125.4, "per_dataset": {
        "a": {"predict_ms_per_window": 0.5}, "b": {"predict_ms_per_window": 1.5}}}}}
    head, row, note = evaluation_table(rep).splitlines()
    assert head.split() == ["model", "MSE", "MAE", "CRPS", "wQL", "cov90", "fit", "forecast"]
    assert row.split() == ["harmony", "0.0123", "0.0500", "0.0400", "0.0300", "91.2", "%",
                           "125", "s", "1", "ms/window"]
    assert "MinMax-scaled" in note
