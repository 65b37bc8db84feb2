"""bench/peers.py: its conversions always; its peers only with the optional ``[peers]`` extra."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bench import peers


@pytest.fixture
def fisher_like(tmp_path):
    """A 600-row Fisher-layout file (``date`` + 3 indicators, one constant) as container9."""
    rng = np.random.default_rng(0)
    n = 600
    t = np.arange(n)
    df = pd.DataFrame(
        {
            "date": pd.date_range("2018-07-24", periods=n, freq="10min").astype(str),
            "load": 2 + np.sin(2 * np.pi * t / 144) + 0.1 * rng.standard_normal(n),
            "cpu.busy": 40 + 5 * rng.standard_normal(n),
            "limit": np.full(n, 64.0),
        }
    )
    df.to_csv(tmp_path / "container9.csv", index=False)
    return tmp_path


def test_quantile_samples_read_the_quantile_function():
    q = np.tile(peers.QS[None, :, None], (4, 1, 2))  # (N, Q, M): quantile u -> value u
    s = peers.quantile_samples(q[:, ::-1])  # crossing (reversed) knots are sorted first
    assert s.shape == (4, peers.NUM_SAMPLES, 1, 2)
    assert np.allclose(np.median(s, axis=1), 0.5)
    assert np.allclose(s[0, :, 0, 0], (np.arange(peers.NUM_SAMPLES) + 0.5) / peers.NUM_SAMPLES)


@pytest.mark.parametrize("name", ["autoets", "lgbm-diff", "last"])
def test_peer_scores_on_the_protocol(fisher_like, name):
    pytest.importorskip("statsforecast")  # the [peers] extra
    pytest.importorskip("lightgbm")
    p = peers.Protocol(9, 24, fisher_like)
    assert p.y.shape == (p.n_te, 1, 3)
    res = peers.run_model(p, name, seed=0)
    for k in ("mse", "mae", "crps", "coverage_90"):
        assert res[k] is not None and np.isfinite(res[k]), k
    assert 0 <= res["coverage_90"] <= 1
    if name == "autoets":  # the constant column fell back to the last value, and says so
        assert any("limit" in f for f in res["info"]["fallbacks"])
