import numpy as np
import pytest

from models.forecast import Forecast


def test_forecast_statistics_are_computed_from_samples():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(500, 3, 2))
    f = Forecast(s, start=100.0, step=10.0, indicators=("cpu_util", "mem_util"))
    assert f.mean.shape == (3, 2)
    np.testing.assert_allclose(f.mean, s.mean(axis=0))
    np.testing.assert_allclose(f.median, np.median(s, axis=0))
    np.testing.assert_allclose(f.quantile(0.9), np.quantile(s, 0.9, axis=0))
    assert f.quantile(0.9) is f.quantile(0.9)  # cached
    np.testing.assert_allclose(f.times(), [100.0, 110.0, 120.0])
    np.testing.assert_allclose(f.indicator("mem_util"), s[:, :, 1])


def test_forecast_rejects_bad_samples():
    with pytest.raises(ValueError, match="NaN"):
        Forecast(np.full((2, 1, 1), np.nan), start=0, step=1, indicators=("x",))
    with pytest.raises(ValueError, match="indicators"):
        Forecast(np.zeros((2, 1, 2)), start=0, step=1, indicators=("x",))
    with pytest.raises(ValueError, match=r"\(S, H, M\)"):
        Forecast(np.zeros((2, 1)), start=0, step=1, indicators=("x",))
