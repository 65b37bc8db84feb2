"""Policy memory as plain JSON: exact round trips, refusals, and every policy's replay unchanged."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_contract import CASES, FRAMES, same

from policies import memory, registry
from policies.pipeline import forecaster_for
from traces.replay.base import get_scenario


def _trip(value):
    return memory.load(json.loads(json.dumps(memory.dump(value), allow_nan=False)))


def test_round_trip_keeps_types_nan_infinities_dtypes_and_shapes():
    value = {
        "t": (1.5, (2, None), "x"),
        "a": np.arange(6, dtype=np.int32).reshape(2, 3),
        "f": np.array([[np.nan, 1.0], [np.inf, -0.0]]),
        "b": np.array([True, False]),
        "e": np.zeros((0, 4), dtype=np.int64),
        "n": [math.nan, -math.inf, np.float64(2.5), np.int64(7), np.bool_(True)],
        "empty": {},
    }
    out = _trip(value)
    assert same(out, {**value, "n": [math.nan, -math.inf, 2.5, 7, True]})
    assert isinstance(out["t"], tuple) and isinstance(out["t"][1], tuple)
    assert out["a"].dtype == np.int32 and out["a"].shape == (2, 3)
    assert out["b"].dtype == np.bool_ and out["e"].shape == (0, 4)
    out["a"][0, 0] = 9  # a writable copy, not a view of the stored bytes
    assert math.isinf(out["n"][1]) and out["n"][1] < 0


@pytest.mark.parametrize("bad", [
    np.array(["a"], dtype=object), {1: "int key"}, {"__tw__": 1}, object(), {"s": {1, 2}},
    np.array(["text"]),
])
def test_dump_refuses_what_is_not_plain_data(bad):
    with pytest.raises(memory.MemoryFormatError):
        memory.dump(bad)


@pytest.mark.parametrize("bad", [
    {"__tw__": "array", "dtype": "|O", "shape": [1], "data": "AAAAAAAAAAA="},
    {"__tw__": "array", "dtype": "<i8", "shape": [2], "data": "AAAAAAAAAAA="},
    {"__tw__": "float", "v": "1.0"},
    {"__tw__": "pickle", "v": "gASVAAAA"},
    {"x": object()},
])
def test_load_refuses_other_formats_without_running_anything(bad):
    with pytest.raises(memory.MemoryFormatError):
        memory.load(bad)


@pytest.mark.parametrize(("scenario", "name"), CASES)
def test_every_policys_replay_is_unchanged_when_its_memory_crosses_json(scenario, name):
    """What the daemon does between two decisions (store the memory as JSON, read it back)."""
    sc_cls = get_scenario(scenario)
    make = getattr(sc_cls, "example_frame", None) or FRAMES[scenario]
    data = sc_cls().prepare(make())

    def run(through_json: bool):
        policy = registry.create(name, scenario)
        inner = policy.decide

        def deciding(spec, obs, forecast, now, memory=None):
            dec = inner(spec, obs, forecast, now, memory)
            if through_json:
                dec.state = _trip(dec.state)
            return dec

        policy.decide = deciding
        return sc_cls().run(policy, data, seed=0, forecaster=forecaster_for(policy, 0)).totals

    assert same(run(True), run(False)), f"{scenario}/{name}: memory does not survive JSON"
