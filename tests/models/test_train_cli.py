"""``tidewise train`` / ``models list|use|show`` against the store, on SQLite and PostgreSQL.

The trace is a long CSV of two entities whose ``cpu`` is a ramp of slope 1 per row, so the
figures are known by hand: ``last`` (repeat the last value plus the one-row change seen in
the context) forecasts every row exactly, CRPS = MSE = 0, while ``window-mean`` over L = 4
rows forecasts ``x[t-1] - 1.5``, missing ``x[t] = x[t-1] + 1`` by 2.5, so MSE = 6.25.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from service import forecasting
from service.cli import main
from service.ingest import Batch
from service.store import forecasts as forecast_store
from service.store import model_registry as model_store
from service.store import samples as sample_store
from tests.service import conftest as _service

backend = _service.backend
settings_factory = _service.settings_factory
settings = _service.settings
store = _service.store

N_ROWS = 200  # per entity: 140 train, 20 validation, 40 test rows
T0 = 1_700_000_040  # a multiple of 60 s
CTX, H = 4, 1


@pytest.fixture
def settings_defaults() -> dict:
    """One-minute buckets and a one-step horizon, as the trained models forecast."""
    return {"forecast_step_s": 60, "forecast_horizon_steps": H, "forecast_context_steps": 30}


@pytest.fixture
def env(settings, monkeypatch, tmp_path):  # noqa: ANN001, ANN201
    """Point the CLI at this test's database (URL and PostgreSQL schema) and model dir."""
    monkeypatch.setenv("TIDEWISE_DB_URL", settings.db_url)
    if settings.db_schema:
        monkeypatch.setenv("TIDEWISE_DB_SCHEMA", settings.db_schema)
    monkeypatch.setenv("TIDEWISE_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("TIDEWISE_FORECAST_STEP_S", str(settings.forecast_step_s))
    monkeypatch.setenv("TIDEWISE_FORECAST_HORIZON_STEPS", str(settings.forecast_horizon_steps))
    monkeypatch.setenv("TIDEWISE_FORECAST_CONTEXT_STEPS", str(settings.forecast_context_steps))
    return tmp_path / "models"


def _ramp_csv(path: Path) -> Path:
    rows = []
    for ent, base in (("vm-a", 10.0), ("vm-b", 500.0)):
        for i in range(N_ROWS):
            rows.append((ent, "cpu", T0 + 60 * i, base + i))
    pd.DataFrame(rows, columns=["entity", "metric", "ts", "value"]).to_csv(path, index=False)
    return path


def _run(args: list[str], capsys) -> tuple[int, str, str]:  # noqa: ANN001
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return exc.value.code or 0, out.out, out.err


def _train(csv: Path, model: str, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(csv),
        "--model",
        model,
        "--context",
        str(CTX),
        "--horizon",
        str(H),
        "--indicator",
        "cpu",
        *extra,
    ]


def _ingest_ramp(store, entity: str, now: int, n: int) -> None:  # noqa: ANN001
    ts = [now - 60 * (n - i) for i in range(n)]
    batch = Batch(
        keys=[(entity, "cpu")] * n,
        ts=ts,
        values=[float(i) for i in range(n)],
        kinds={entity: "vm"},
        first_item={entity: 0},
        labels={},
        units={},
    )
    sample_store.ingest(store, batch)


def test_train_list_use_and_the_daemon_forecasts_with_the_current_model(
    store,
    env,
    tmp_path,
    capsys,  # noqa: ANN001
):
    csv = _ramp_csv(tmp_path / "ramp.csv")

    code, out, err = _run(_train(csv, "window-mean"), capsys)
    assert code == 0, err
    assert "current: yes (no current model of this name)" in out
    code, out, err = _run(_train(csv, "last"), capsys)
    assert code == 0, err
    assert "current: yes (validation CRPS 0 < current" in out
    code, out, err = _run(_train(csv, "window-mean"), capsys)  # worse than `last`: kept
    assert code == 0, err
    assert "current: no (validation CRPS" in out and ">= current 0)" in out

    with store.sessions() as session:
        recs = model_store.list_models(session)
    assert [(r.id, r.name, r.is_current) for r in recs] == [
        (1, "daemon:cpu", False),
        (2, "daemon:cpu", True),
        (3, "daemon:cpu", False),
    ]
    wm, last = recs[0], recs[1]
    # 20 validation rows per entity, one window each (H = 1), two entities
    assert wm.metrics["validation"]["windows"] == 40
    assert wm.metrics["validation"]["mse"] == pytest.approx(6.25)
    assert last.metrics["validation"]["mse"] == pytest.approx(0.0, abs=1e-18)
    assert last.metrics["validation"]["crps"] == pytest.approx(0.0, abs=1e-12)
    assert last.metrics["validation"]["coverage_90"] == 1.0
    assert last.metrics["incumbent"]["id"] == 1
    assert last.metrics["incumbent"]["crps"] == pytest.approx(wm.metrics["validation"]["crps"])
    trained = json.loads(last.trained_on)
    assert trained["rows"] == 2 * N_ROWS and trained["train_rows"] == 2 * 140
    assert trained["indicators"] == ["cpu"] and trained["entities"] == 2
    assert trained["path"] == str(csv.resolve())
    assert trained["start"] == "2023-11-14T22:14:00Z"
    from service.artifacts import artifact_folder

    assert Path(last.artifact_path) == artifact_folder(env, "daemon:cpu", last.version)
    assert Path(last.artifact_path).parent.name.startswith("daemon_cpu-")

    # the artifact loads and predicts: the next value of a ramp
    from models.base import load_predictor
    from models.data import Series

    pred = load_predictor(last.artifact_path)
    fc = pred.predict(Series(np.arange(10.0)[:, None], 60.0 * np.arange(10), ("value",)))[0]
    assert fc.mean[0, 0] == pytest.approx(10.0)

    code, out, _ = _run(["models", "list"], capsys)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 4 and lines[0].split()[:3] == ["id", "name", "version"]
    assert [ln.split()[0] for ln in lines[1:]] == ["1", "2", "3"]
    assert "*" in lines[2].split() and "*" not in lines[1].split()
    assert lines[1].rstrip().endswith(wm.artifact_path)
    assert "mse=6.25" in lines[1]

    code, out, _ = _run(["models", "show", "2"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["id"] == 2 and doc["current"] and doc["artifact_present"]
    assert doc["trained_on"]["indicators"] == ["cpu"]

    # the daemon's refresh forecasts cpu with the current model; `models use` switches it
    now = T0 + 3600
    _ingest_ramp(store, "web", now, 30)
    cache = forecasting.ModelCache()
    forecasting.refresh(store, now, cache)
    with store.sessions() as session:
        fc = forecast_store.latest_forecast(session, "web", "cpu")
    assert fc.model == f"daemon:cpu@{last.version}"
    assert fc.payload["mean"] == pytest.approx([30.0])  # ramp 0..29 -> 30

    code, out, _ = _run(["models", "use", "1"], capsys)
    assert code == 0 and f"id 1, version {wm.version}" in out
    with store.sessions() as session:
        assert [r.id for r in model_store.list_models(session) if r.is_current] == [1]
    forecasting.refresh(store, now, cache)  # same history, the other model
    with store.sessions() as session:
        fc = forecast_store.latest_forecast(session, "web", "cpu")
    assert fc.model == f"daemon:cpu@{wm.version}"
    assert fc.payload["mean"] == pytest.approx([27.5])  # window-mean of 26..29, L = 4


def test_force_and_no_current(store, env, tmp_path, capsys):  # noqa: ANN001
    csv = _ramp_csv(tmp_path / "ramp.csv")
    assert _run(_train(csv, "last"), capsys)[0] == 0
    code, out, _ = _run(_train(csv, "window-mean", "--force"), capsys)
    assert code == 0 and "current: yes (--force)" in out
    code, out, _ = _run(_train(csv, "last", "--no-current", "--name", "ramp-last"), capsys)
    assert code == 0 and "current: no (--no-current)" in out
    with store.sessions() as session:
        recs = model_store.list_models(session)
    assert [(r.name, r.is_current) for r in recs] == [
        ("daemon:cpu", False),
        ("daemon:cpu", True),
        ("ramp-last", False),
    ]


def test_unmigrated_store_is_one_error_line(settings, env, tmp_path, capsys):  # noqa: ANN001
    csv = _ramp_csv(tmp_path / "ramp.csv")
    code, out, err = _run(_train(csv, "last"), capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "run `tidewise db upgrade` first" in err
    assert not env.exists()  # nothing trained or written
    code, _, err = _run(["models", "list"], capsys)
    assert code == 2 and "tidewise db upgrade" in err


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_bad_input_is_one_error_line_and_registers_nothing(store, env, tmp_path, capsys):  # noqa: ANN001
    csv = _ramp_csv(tmp_path / "ramp.csv")
    junk = tmp_path / "junk.csv"
    junk.write_bytes(b"\x00\xff\x00 not a trace\n")
    cases = [
        (_train(junk, "last"), "junk.csv"),
        (_train(tmp_path / "absent.csv", "last"), "absent.csv: no such file or folder"),
        (_train(csv, "no-such-model"), "unknown model 'no-such-model'"),
        (_train(csv, "last", "--set", "window=3"), "no parameter(s) ['window']"),
        (
            ["train", "--data", str(csv), "--model", "last", "--indicator", "mem"],
            "has no indicator 'mem'",
        ),
        (["models", "use", "7"], "no registered model has id 7"),
        (["models", "show", "7"], "no registered model has id 7"),
    ]
    for args, needle in cases:
        code, out, err = _run(args, capsys)
        assert code == 2, (args, err)
        assert err.startswith("error: ") and err.count("\n") == 1 and needle in err, (args, err)
    with store.sessions() as session:
        assert model_store.list_models(session) == []
    assert not env.exists() or not any(env.rglob("config.json"))

    # a registered model whose artifact was deleted cannot be made current
    assert _run(_train(csv, "window-mean"), capsys)[0] == 0
    assert _run(_train(csv, "last", "--no-current"), capsys)[0] == 0
    with store.sessions() as session:
        gone = model_store.get_model(session, 2).artifact_path
    shutil.rmtree(gone)
    code, _, err = _run(["models", "use", "2"], capsys)
    assert code == 2 and "artifact" in err and "is missing" in err
    with store.sessions() as session:
        assert [r.id for r in model_store.list_models(session) if r.is_current] == [1]
    code, out, _ = _run(["models", "list"], capsys)
    assert code == 0 and "(missing)" in out.splitlines()[2]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_current_model_changed_during_training_is_not_replaced(
    store,
    env,
    tmp_path,
    capsys,
    monkeypatch,  # noqa: ANN001
):
    from service import training

    csv = _ramp_csv(tmp_path / "ramp.csv")
    assert _run(_train(csv, "window-mean"), capsys)[0] == 0
    real_score, calls = training.score, []

    def score_then_switch(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        if len(calls) == 2:  # scoring the incumbent; another process registers a version
            with store.write_sessions() as session, session.begin():
                model_store.register_model(session, "daemon:cpu", "other", str(tmp_path))
        return real_score(*args, **kw)

    monkeypatch.setattr(training, "score", score_then_switch)
    code, out, _ = _run(_train(csv, "last"), capsys)  # better than window-mean, but...
    assert code == 0 and "current: no (the current model changed while training" in out
    with store.sessions() as session:
        assert [(r.version, r.is_current) for r in model_store.list_models(session)][1:] == [
            ("other", True),
            (model_store.list_models(session)[2].version, False),
        ]


def test_a_model_the_daemon_cannot_serve_as_trained_is_warned(
    store,
    env,
    tmp_path,
    capsys,
    monkeypatch,  # noqa: ANN001
):
    csv = _ramp_csv(tmp_path / "ramp.csv")
    code, _, err = _run(_train(csv, "last"), capsys)  # 60 s rows, daemon buckets 60 s
    assert code == 0 and err == ""
    code, out, err = _run(_train(csv, "last", "--step", "120"), capsys)
    assert code == 0 and err.startswith("warning: trained on 120 s rows") and err.count("\n") == 1
    args = [
        "train",
        "--data",
        str(csv),
        "--model",
        "last",
        "--context",
        "40",
        "--horizon",
        "1",
        "--indicator",
        "cpu",
    ]  # the daemon keeps 30 buckets of context
    code, out, err = _run(args, capsys)
    assert code == 0 and err == (
        "warning: the model reads 40 rows of context, the daemon keeps 30 "
        "(TIDEWISE_FORECAST_CONTEXT_STEPS); the refresh will use the fallback forecast; "
        "retrain with a shorter --context\n"
    )
    monkeypatch.setenv("TIDEWISE_FORECAST_HORIZON_STEPS", "3")
    code, out, err = _run(["models", "use", "1"], capsys)
    assert code == 0 and "id 1" in out
    assert err.startswith("warning: the model forecasts 1 steps, the daemon needs 3")
    with store.sessions() as session:
        assert [r.id for r in model_store.list_models(session) if r.is_current] == [1]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_tiny_harmony_trains_registers_and_serves(store, env, tmp_path, capsys):  # noqa: ANN001
    from tests.models.conftest import TINY

    csv = _ramp_csv(tmp_path / "ramp.csv")
    sets = [a for k, v in TINY["harmony"].items() for a in ("--set", f"{k}={v}")]
    code, out, err = _run(_train(csv, "harmony", "--name", "daemon:cpu", *sets), capsys)
    assert code == 0, err
    with store.sessions() as session:
        (rec,) = model_store.list_models(session)
    assert rec.is_current and rec.metrics["params"]["d_model"] == 16
    assert rec.metrics["validation"]["windows"] == 40
    now = T0 + 3600
    _ingest_ramp(store, "web", now, 30)
    forecasting.refresh(store, now)
    with store.sessions() as session:
        fc = forecast_store.latest_forecast(session, "web", "cpu")
    assert fc.model == f"daemon:cpu@{rec.version}" and not fc.fallback


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_models_registered_by_the_retraining_job_are_listed(store, env, tmp_path, capsys):  # noqa: ANN001
    with store.write_sessions() as session, session.begin():  # as service.forecasting.retrain
        model_store.register_model(
            session,
            "daemon:cpu",
            "v1",
            str(tmp_path / "gone"),
            trained_on="2 series of 'cpu', last 240 x 15 s before 1700000000",
            metrics={"holdout_crps": 0.125, "incumbent": "fallback:last"},
        )
    code, out, _ = _run(["models", "list"], capsys)
    row = out.splitlines()[1]
    assert code == 0 and "holdout_crps=0.125" in row and row.rstrip().endswith("(missing)")
    assert "2 series of 'cpu'" in row
    code, out, _ = _run(["models", "show", "1"], capsys)
    doc = json.loads(out)
    assert doc["trained_on"].startswith("2 series") and doc["artifact_present"] is False


def test_train_shows_the_fit_progress_and_figures_with_units(store, env, tmp_path, capsys):  # noqa: ANN001
    csv = _ramp_csv(tmp_path / "ramp.csv")
    code, out, err = _run(_train(csv, "quantile-gbm", "--set", "max_iter=3", "--progress"),
                          capsys)
    assert code == 0, err
    # one indicator, one step, seven quantile levels; then the calibration pass
    assert "quantile-gbm quantile model 1/7" in err and "quantile-gbm quantile model 7/7" in err
    assert "quantile-gbm calibration 1/1" in err
    assert "validation (40 windows, in the data's units; MSE in their square): CRPS " in out
    assert re.search(r"coverage_90 [\d.]+ %", out)
    code, out, err = _run(_train(csv, "quantile-gbm", "--set", "max_iter=3"), capsys)
    assert code == 0 and err == ""  # not a terminal: no bar unless asked for
