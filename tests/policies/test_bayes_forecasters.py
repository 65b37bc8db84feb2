"""The forecasters ``bayes`` is fed: registered online models, by name, through one adapter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from models.growth_bootstrap import GrowthBootstrapPredictor
from models.intermittent_count import IntermittentCountPredictor
from policies import memory
from policies.forecasters import PredictorForecaster
from policies.pipeline import DEFAULT_FORECASTERS, default_forecaster


def test_default_forecasters_are_registered_models_by_name():
    vm, sl, pw = (default_forecaster(s) for s in ("vm", "serverless", "power"))
    assert all(isinstance(f, PredictorForecaster) and f.online for f in (vm, sl, pw))
    assert isinstance(vm.predictor, GrowthBootstrapPredictor)
    assert isinstance(sl.predictor, IntermittentCountPredictor)
    assert (vm.name, sl.name, pw.name) == ("growth-bootstrap", "intermittent-count",
                                          "growth-bootstrap")
    assert vm.predictor.config["space"] == "log" and vm.predictor.num_samples == 256
    assert sl.predictor.num_samples == 1024
    cfg = pw.predictor.config  # power: no daily season, one hour of recent behaviour
    assert (cfg["space"], cfg["season_s"], cfg["window_s"], cfg["offset_decay"]) == (
        "linear", 0.0, 3600.0, 0.9)
    assert set(DEFAULT_FORECASTERS) == {"vm", "serverless", "power"}
    with pytest.raises(ValueError, match="scenario"):
        default_forecaster("nope")


def test_state_round_trip_through_json_continues_exactly_and_a_sliding_window_is_followed():
    """The daemon's way: a fresh forecaster per decision, its state restored through the
    memory codec, fed a window that slides (the oldest row drops out as a new one arrives)."""
    rng = np.random.default_rng(3)
    hist = (rng.random((400, 3)) < [0.05, 0.4, 0.9]) * rng.integers(1, 5, (400, 3))
    window = 120
    for scenario, horizon in (("serverless", 3), ("vm", 4)):
        whole = default_forecaster(scenario, seed=1)  # the replay's way: the whole history
        state = None
        for t in range(60, 400, 7 if horizon == 4 else 2):
            now = 60.0 * t
            ref = whole(hist[:t].astype(float), now, 60.0, horizon)
            fresh = default_forecaster(scenario, seed=1)
            if state is not None:
                fresh.load_state_dict(memory.load(json.loads(json.dumps(memory.dump(state)))))
            lo = max(0, t - window) if scenario == "serverless" else 0
            got = fresh(hist[lo:t].astype(float), now, 60.0, horizon)
            state = fresh.state_dict()
            np.testing.assert_array_equal(got.samples, ref.samples)


def test_restart_starts_a_new_stream():
    y = np.abs(np.sin(np.arange(300) / 7.0)) * 10
    fc = default_forecaster("vm", seed=4)
    a = fc(y, 0.0, 60.0, 3).samples
    fc(y, 0.0, 60.0, 3)  # the generator moved on
    fc.restart()
    np.testing.assert_array_equal(fc(y, 0.0, 60.0, 3).samples, a)
