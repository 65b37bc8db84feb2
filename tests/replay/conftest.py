"""Fixtures shared by the replay tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture
def trace_csv(tmp_path):
    """A small canonical long-format trace: 600 one-second samples of CPU cores."""
    rng = np.random.default_rng(11)
    t = np.arange(600.0)
    d = 10 + 8 * np.sin(t / 60.0) ** 2 + rng.gamma(2.0, 1.0, t.size)
    path = tmp_path / "trace.csv"
    pd.DataFrame({"entity": "svc", "metric": "cpu_cores", "ts": t, "value": d}).to_csv(
        path, index=False)
    return path
