"""Contract tests over every registered model (GluonTS test_estimators style)."""

from __future__ import annotations

import numpy as np
import pytest

from common.errors import ConfigError, InputError, NoDataError
from models.base import NoData, Predictor, available_models, get_estimator
from models.data import Series
from models.forecast import Forecast
from tests.models.conftest import INDICATORS, TINY, make_series

L, H = 24, 2
MODELS = available_models()


def test_registry_has_the_required_models():
    assert {"last", "window-mean", "seasonal-naive", "quantile-gbm", "harmony"} <= set(MODELS)


def _fit(name, **kw):
    train = [make_series(200, seed=1), make_series(200, seed=2, entity="e1")]
    val = make_series(80, seed=3)
    est = get_estimator(
        name, context_length=L, prediction_length=H, num_samples=50, **{**TINY.get(name, {}), **kw}
    )
    return est.fit(train, val)


@pytest.fixture(scope="module", params=MODELS)
def fitted(request):
    import torch

    torch.set_num_threads(1)
    return request.param, _fit(request.param)


def _check(f, name):
    assert isinstance(f, Forecast)
    assert f.samples.shape == (50, H, len(INDICATORS))
    assert np.isfinite(f.samples).all()
    assert f.indicators == INDICATORS
    assert f.model == name


def test_fits_predicts_right_shape(fitted):
    name, pred = fitted
    s = make_series(100, seed=9)
    (f,) = pred.predict(s)
    _check(f, name)
    assert f.start == pytest.approx(s.ts[-1] + s.step)
    assert f.step == pytest.approx(s.step)


def test_save_load_roundtrip_equal(fitted, tmp_path):
    name, pred = fitted
    pred.save(tmp_path / "p")
    back = Predictor.load(tmp_path / "p")
    assert type(back) is type(pred)
    assert back == pred
    s = make_series(100, seed=9)
    np.testing.assert_allclose(back.predict(s)[0].samples, pred.predict(s)[0].samples)
    doc = (tmp_path / "p" / "config.json").read_text()
    assert '"format_version": 1' in doc and '"tidewise_version"' in doc


def test_predictors_differ_when_trained_differently(fitted):
    name, pred = fitted
    other = _fit(name, seed=7) if name not in ("last", "window-mean") else None
    if other is None:  # no state: differ in config instead
        other = _fit(name, fallback="window-mean")
    assert other != pred


def test_batched_windows_match_single(fitted):
    name, pred = fitted
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, L, 3)) + np.array([5, 40, 50])
    t = 1e9 + 600.0 * np.arange(L + H)[None].repeat(5, 0)
    outs = pred.predict_windows(x, t)
    assert len(outs) == 5 and all(o.samples.shape == (50, H, 3) for o in outs)
    assert all(np.isfinite(o.samples).all() for o in outs)


def test_constant_series_gives_finite_forecast(fitted):
    name, pred = fitted
    s = make_series(100)
    s = Series(np.full_like(s.values, 3.0), s.ts, s.indicators, "flat", s.step)
    (f,) = pred.predict(s)
    _check(f, name)


def test_too_short_history_uses_fallback(fitted):
    name, pred = fitted
    s = make_series(100)
    short = Series(s.values[:5], s.ts[:5], s.indicators, "short", s.step)
    (f,) = pred.predict(short)
    assert f.model == "fallback:last"
    assert "shorter than the context" in f.info["reason"]
    assert np.isfinite(f.samples).all()
    # the fallback centres on the last value
    np.testing.assert_allclose(np.median(f.samples[:, 0], axis=0), short.values[-1], rtol=0.2)


def test_nans_are_filled_or_fall_back(fitted):
    name, pred = fitted
    s = make_series(100)
    v = s.values.copy()
    v[-3, 1] = np.nan  # a small gap is filled, the model still answers
    (f,) = pred.predict(Series(v, s.ts, s.indicators, "gap", s.step))
    assert f.model == name and np.isfinite(f.samples).all()
    v[-L + 1 :, 2] = np.nan  # most of the window missing: fallback, still finite
    (f,) = pred.predict(Series(v, s.ts, s.indicators, "holes", s.step))
    assert f.model == "fallback:last" and "missing" in f.info["reason"]
    assert np.isfinite(f.samples).all()


def test_all_nan_indicator_is_nodata(fitted):
    _, pred = fitted
    s = make_series(100)
    v = s.values.copy()
    v[:, 0] = np.nan
    (o,) = pred.predict_outcomes(Series(v, s.ts, s.indicators, "dead", s.step))
    assert isinstance(o, NoData) and "load" in o.reason
    with pytest.raises(NoDataError, match="dead"):
        pred.predict(Series(v, s.ts, s.indicators, "dead", s.step))


def test_missing_indicator_is_a_clear_error(fitted):
    _, pred = fitted
    s = make_series(100)
    two = Series(s.values[:, :2], s.ts, s.indicators[:2], "two", s.step)
    with pytest.raises(InputError, match="net_in.*missing"):
        pred.predict(two)


def test_training_rejects_nan_and_unknown_params():
    s = make_series(100)
    v = s.values.copy()
    v[10, 1] = np.nan
    with pytest.raises(InputError, match="row 10, indicator 'cpu_util'"):
        get_estimator("last", context_length=L).fit(Series(v, s.ts, s.indicators))
    with pytest.raises(ConfigError, match="no parameter"):
        get_estimator("harmony", context_length=L, nonsense=1)
    with pytest.raises(NoDataError, match="long enough"):
        get_estimator("last", context_length=500).fit(s)


def test_model_failure_falls_back(fitted, monkeypatch):
    name, pred = fitted

    def boom(*a, **k):
        raise RuntimeError("kaput")

    monkeypatch.setattr(pred, "_sample", boom)
    (f,) = pred.predict(make_series(100))
    assert f.model == "fallback:last" and "kaput" in f.info["reason"]
