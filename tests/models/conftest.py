"""Small synthetic data and tiny model settings shared by the model tests."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.data import Series

torch.set_num_threads(1)

#: Tiny settings per model so every contract test trains in well under a second.
TINY: dict[str, dict] = {
    "harmony": {
        "d_model": 16,
        "n_heads": 2,
        "n_layers": 1,
        "d_ff": 32,
        "context_dim": 16,
        "flow_hidden": 16,
        "flow_bins": 4,
        "max_epochs": 2,
        "batch_size": 64,
        "members": 1,
    },
    "quantile-gbm": {"max_iter": 5, "max_windows": 200},
}

INDICATORS = ("load", "cpu_util", "net_in")


def make_series(n: int = 240, seed: int = 0, step: float = 600.0, entity: str = "e0") -> Series:
    """Three indicators: a daily sine load, cpu following it, bimodal net noise."""
    rng = np.random.default_rng(seed)
    ts = 1_532_390_400.0 + step * np.arange(n)  # 2018-07-24 00:00 UTC
    day = np.sin(2 * np.pi * (ts % 86400) / 86400)
    load = 5 + 2 * day + 0.1 * rng.normal(size=n)
    cpu = 40 + 10 * day + rng.normal(size=n)
    net = np.where(rng.random(n) < 0.3, 100.0, 20.0) + rng.normal(size=n)
    return Series(np.stack([load, cpu, net], axis=1), ts, INDICATORS, entity, step)


@pytest.fixture
def series() -> Series:
    return make_series()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield
