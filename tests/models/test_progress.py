"""Progress inside long fits: the events estimators report, and the CLI lines they make."""

from __future__ import annotations

import pytest

from models.base import get_estimator
from models.progress import FitEvent
from service.cli import main
from tests.models.conftest import TINY, make_series
from tests.models.test_evaluate_cli import _write_csv


def test_quantile_gbm_reports_each_quantile_model(series):
    events: list[FitEvent] = []
    est = get_estimator("quantile-gbm", context_length=12, prediction_length=2, calibrate=False,
                        **{**TINY["quantile-gbm"], "quantiles": [0.1, 0.5, 0.9]})
    est.fit(series, progress=events.append)
    total = 2 * 3 * 3  # steps x indicators x quantile levels
    assert [(e.stage, e.done, e.total) for e in events] == [
        ("quantile model", k, total) for k in range(total + 1)]  # 0: the fit starts
    assert {e.model for e in events} == {"quantile-gbm"}


def test_harmony_reports_epochs_per_member_members_and_calibration():
    events: list[FitEvent] = []
    train, val = make_series(120, seed=1), make_series(60, seed=2)
    est = get_estimator("harmony", context_length=12, **{**TINY["harmony"], "members": 2,
                                                        "patience": 10})
    est.fit(train, val, progress=events.append)
    assert [e.text() for e in events] == [
        "member 1/2 epoch 0/2", "member 1/2 epoch 1/2", "member 1/2 epoch 2/2", "member 1/2",
        "member 2/2 epoch 0/2", "member 2/2 epoch 1/2", "member 2/2 epoch 2/2", "member 2/2",
        "calibration 0/1", "calibration 1/1",
    ]
    assert [(e.stage, e.done, e.total) for e in events if e.stage == "member"] == [
        ("member", 1, 2), ("member", 2, 2)]


def test_a_fit_without_a_callback_reports_nothing_and_forgets_the_last_one(series):
    est = get_estimator("quantile-gbm", context_length=12, calibrate=False,
                        **{**TINY["quantile-gbm"], "quantiles": [0.1, 0.9]})
    seen: list[FitEvent] = []
    est.fit(series, progress=seen.append)
    n = len(seen)
    est.fit(series)  # no callback: the previous one is not called again
    assert len(seen) == n and est._progress is None


def test_evaluate_shows_progress_inside_each_fit(tmp_path, capsys):
    csv = tmp_path / "c.csv"
    _write_csv(csv)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--data", str(csv), "--context", "24", "--models",
              "quantile-gbm,harmony", "--out", str(tmp_path / "out"),
              "--set", "quantile-gbm.max_iter=3", "--set", "harmony.max_epochs=2",
              "--set", "harmony.members=2", "--set", "harmony.d_model=8",
              "--set", "harmony.n_heads=2", "--set", "harmony.d_ff=16",
              "--set", "harmony.context_dim=8", "--set", "harmony.flow_hidden=8"])
    assert (exc.value.code or 0) == 0
    err = capsys.readouterr().err
    for line in ("quantile-gbm quantile model 1/21", "quantile-gbm quantile model 21/21",
                 "harmony member 1/2 epoch 1/2", "harmony member 2/2 epoch 1/2",
                 "harmony calibration 0/1", "harmony forecasting "):
        assert line in err, line
    # nothing is said with --no-progress
    with pytest.raises(SystemExit):
        main(["evaluate", "--data", str(csv), "--context", "24", "--models", "quantile-gbm",
              "--out", str(tmp_path / "out2"), "--set", "quantile-gbm.max_iter=3",
              "--no-progress"])
    assert "quantile model" not in capsys.readouterr().err
