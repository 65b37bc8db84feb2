"""Any model in replay: ``--forecaster NAME|ARTIFACT`` with a training span and a scored span."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from common.errors import InputError, NoDataError
from models.base import get_estimator
from models.data import Series
from policies.forecasters import PredictorForecaster
from traces.replay.core import run_replay, split_frame


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    t = np.arange(1200.0) * 15
    d = 20 + 8 * np.sin(t / 1800.0) + rng.gamma(2.0, 1.5, t.size)
    f = pd.DataFrame({"entity": "svc", "metric": "cpu_cores", "ts": 1.7e9 + t, "value": d})
    f.attrs["step"] = 15.0
    return f


OPTS = {"capacity": 4.0, "boot_s": 30.0, "sync_s": 15.0}


def test_a_trained_model_feeds_bayes_and_every_policy_is_scored_after_the_split(tmp_path):
    frame = _frame()
    rep = run_replay(frame, "vm", ["bayes", "hpa"], options=OPTS, model="window-mean",
                     model_params={"context_length": 24}, out_dir=tmp_path / "out")
    info = rep["config"]["model"]
    cut = float(frame["ts"].min()) + 0.5 * float(frame["ts"].max() - frame["ts"].min())
    assert info["name"] == "model:window-mean" and info["train_span"][1] == pytest.approx(cut)
    # the step in progress, then (30 + 15) / 15 steps of boot and decision period
    assert info["horizon_needed"] == 4 and info["prediction_length"] == 4
    assert info["scored"]["windows"] > 100 and info["scored"]["crps"] > 0
    # the tail a 1 % SLA lives in, recorded beside the 90 % interval's coverage
    assert 0.5 < info["scored"]["coverage_upper_99"] <= 1.0
    assert rep["config"]["forecasters_used"] == {"bayes": "model:window-mean"}

    # the peers are scored on the same part: hpa equals a replay of the second half alone
    _, test, _ = split_frame(frame, 0.5)
    alone = run_replay(test, "vm", ["hpa", "bayes"], options=OPTS)
    assert rep["policies"]["hpa"] == alone["policies"]["hpa"]
    # ... and bayes fed the model decides differently from bayes fed its online forecaster
    assert rep["policies"]["bayes"][0]["totals"] != alone["policies"]["bayes"][0]["totals"]
    assert (tmp_path / "out" / "report.json").exists()


def test_a_saved_artifact_is_loaded_instead_of_trained(tmp_path):
    frame = _frame()
    vals = frame["value"].to_numpy()[:600]
    est = get_estimator("last", context_length=12, prediction_length=5)
    pred = est.fit(Series(vals, frame["ts"].to_numpy()[:600], ("demand",), "svc", 15.0))
    folder = pred.save(tmp_path / "art")
    rep = run_replay(frame, "vm", ["bayes"], options=OPTS, model=str(folder))
    assert rep["config"]["model"]["artifact"] == str(folder)
    assert rep["config"]["model"]["context_length"] == 12


def test_bad_model_or_split_is_a_named_input_error():
    frame = _frame()
    with pytest.raises(InputError, match="--forecaster.*no model 'nope'"):
        run_replay(frame, "vm", ["bayes"], options=OPTS, model="nope")
    with pytest.raises(InputError, match="--train-until"):
        run_replay(frame, "vm", ["bayes"], options=OPTS, model="last", train_until="soon")
    with pytest.raises(InputError, match="--train-until"):
        run_replay(frame, "vm", ["bayes"], options=OPTS, model="last", train_until=1.0)


def test_predictor_forecaster_batches_columns_and_refuses_what_it_cannot_do():
    rng = np.random.default_rng(0)
    y = rng.random((300, 1)) * 10
    pred = get_estimator("last", context_length=8, prediction_length=3).fit(
        Series(y, 60.0 * np.arange(300), ("demand",), "x", 60.0))
    fc = PredictorForecaster(pred, seed=1)
    hist = np.column_stack([np.arange(20.0), 100 + np.arange(20.0)])  # two servers
    out = fc(hist, now=1200.0, step=60.0, horizon=2)
    assert out.samples.shape[1:] == (2, 2) and out.start == 1200.0
    # each column forecast from its own context (both rise by 1 a row: last value + 1)
    np.testing.assert_allclose(np.median(out.samples[:, 0, :], axis=0), [20.0, 120.0])
    with pytest.raises(NoDataError, match="3 steps, 4 wanted"):
        fc(hist, now=1200.0, step=60.0, horizon=4)
    with pytest.raises(NoDataError, match="8 rows of context, 5 so far"):
        fc(hist[:5], now=1200.0, step=60.0, horizon=1)


def test_perfect_foresight_forecaster_hands_bayes_the_realised_future():
    frame = _frame()
    rep = run_replay(frame, "vm", ["bayes", "oracle"], options=OPTS, model="truth")
    assert rep["config"]["model"]["name"] == "truth"
    assert rep["config"]["forecasters_used"] == {"bayes": "truth"}
    # foresight beats the online forecaster's bayes on the same part, and the oracle bounds it
    _, test, _ = split_frame(frame, 0.5)
    online = run_replay(test, "vm", ["bayes"], options=OPTS)["policies"]["bayes"][0]["totals"]
    truth = rep["policies"]["bayes"][0]["totals"]
    oracle = rep["policies"]["oracle"][0]["totals"]
    assert truth["violation_rate"] <= online["violation_rate"]
    assert oracle["replica_seconds"] <= truth["replica_seconds"] < online["replica_seconds"]

    from policies.forecasters import TruthForecaster

    fc = TruthForecaster(np.arange(10.0))
    out = fc(np.zeros((7, 1)), now=0.0, step=1.0, horizon=5)
    np.testing.assert_array_equal(out.samples[0, :, 0], [7, 8, 9, 9, 9])


def test_precomputed_windows_are_served_and_a_different_history_is_forecast_on_the_spot():
    rng = np.random.default_rng(2)
    y = rng.random((200, 2)) * 10
    pred = get_estimator("window-mean", context_length=8, prediction_length=3).fit(
        Series(y[:, :1], 60.0 * np.arange(200), ("demand",), "x", 60.0))
    fc = PredictorForecaster(pred, seed=3)
    fc.precompute(y, start=0.0, step=60.0)
    out = fc(y[:50], now=3000.0, step=60.0, horizon=2)
    assert fc.calls == 0 and out.samples.shape[1:] == (2, 2)  # served from the batch
    # the batch forecast each column from its own last 8 rows: window means
    np.testing.assert_allclose(out.samples[:, 0, :].mean(axis=0), y[42:50].mean(axis=0),
                               rtol=0.25)
    other = y[:50].copy()
    other[-1] += 1.0
    fc(other, now=3000.0, step=60.0, horizon=2)
    assert fc.calls == 1  # not the known series: forecast on the spot


def test_an_online_model_by_name_feeds_bayes_exactly_as_the_default_does():
    """``--forecaster growth-bootstrap`` is the vm default by name: every run of a sweep
    streams the scored part from its start, so bayes decides as with its own forecaster."""
    frame = _frame()
    rep = run_replay(frame, "vm", ["bayes"], options=OPTS, model="growth-bootstrap",
                     sweep=True)
    _, test, _ = split_frame(frame, 0.5)
    alone = run_replay(test, "vm", ["bayes"], options=OPTS, sweep=True)
    assert len(rep["policies"]["bayes"]) > 1
    assert rep["policies"]["bayes"] == alone["policies"]["bayes"]
    assert rep["config"]["forecasters_used"] == {"bayes": "model:growth-bootstrap"}
    assert alone["config"]["forecasters_used"] == {"bayes": "growth-bootstrap"}
    info = rep["config"]["model"]  # scored like any model, on the windows of the scored part
    assert info["model"] == "growth-bootstrap" and info["scored"]["windows"] > 100
    assert 0 < info["scored"]["crps"] < 10


def test_the_cli_reports_a_truth_replay_without_forecast_scores(tmp_path):
    """`tidewise replay --forecaster truth` once crashed printing scores truth does not have."""
    from typer.testing import CliRunner

    from service.cli import app

    path = tmp_path / "trace.csv"
    _frame().to_csv(path, index=False)
    r = CliRunner().invoke(app, ["replay", "--trace", str(path), "--scenario", "vm", "--policy",
                                 "bayes", "--forecaster", "truth", "--option", "capacity=4",
                                 "--option", "boot_s=30", "--out", str(tmp_path / "o"),
                                 "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "forecaster truth: scored" in r.output and "perfect foresight" in r.output


def test_foresight_on_coarse_samples_leaves_no_violation():
    """300-s samples, a 60-s boot, 15-s decisions: the forecast must reach past the sample in
    progress, or every rise is seen only once it has begun and each scale-up is a boot late
    (bayes fed the realised future then missed 2.8 % of Azure VM 2017's steps)."""
    rng = np.random.default_rng(3)
    n = 600
    d = 20 + 6 * rng.random(n) + 10 * (rng.random(n) < 0.2)
    f = pd.DataFrame({"entity": "svc", "metric": "cpu_cores", "ts": 1.7e9 + 300.0 * np.arange(n),
                      "value": d})
    f.attrs["step"] = 300.0
    opts = {"capacity": 4.0, "boot_s": 60.0, "sync_s": 15.0}
    rep = run_replay(f, "vm", ["bayes", "oracle"], options=opts, model="truth")
    truth = rep["policies"]["bayes"][0]["totals"]
    oracle = rep["policies"]["oracle"][0]["totals"]
    assert truth["violation_rate"] == 0.0
    assert truth["replica_seconds"] <= 1.1 * oracle["replica_seconds"]


def test_the_forecaster_training_shows_its_progress(capsys):
    """`--forecaster quantile-gbm` trains before the replay: its quantile models are shown."""
    run_replay(_frame(), "vm", ["hpa"], options=OPTS, model="quantile-gbm", progress=True,
               model_params={"context_length": 24, "max_iter": 3, "quantiles": [0.1, 0.5, 0.9]})
    err = capsys.readouterr().err
    # one step ahead (hpa reads no forecast), one series, three levels
    assert "train forecaster" in err and "quantile-gbm quantile model 3/3" in err
    run_replay(_frame(), "vm", ["hpa"], options=OPTS, model="quantile-gbm",
               model_params={"context_length": 24, "max_iter": 3, "quantiles": [0.1, 0.5, 0.9]})
    assert "quantile model" not in capsys.readouterr().err


def test_a_callers_own_online_forecaster_restarts_for_every_sweep_point():
    """A forecaster object handed to ``run_replay`` is one object for all runs of a sweep:
    each run must stream from its start, as the default (made anew per run) does. Before the
    restart, the second sweep point's forecasts were drawn from a generator the first run
    had advanced."""
    from policies.pipeline import default_forecaster

    frame = _frame()
    own = default_forecaster("vm", seed=0)
    rep = run_replay(frame, "vm", ["bayes"], options=OPTS, sweep=True, forecaster=own)
    default = run_replay(frame, "vm", ["bayes"], options=OPTS, sweep=True)
    assert len(rep["policies"]["bayes"]) > 1
    assert rep["policies"]["bayes"] == default["policies"]["bayes"]
