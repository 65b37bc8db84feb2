"""The Decision contract, checked over EVERY registered policy of every scenario.

Each policy is replayed through its scenario on a small trace while its ``decide``
arguments (the scenario's typed ``Spec`` and ``Observation``, the forecast, ``now`` and the
policy's memory) are recorded; a spread of recorded calls is then replayed on fresh instances:
the result must be a :class:`Decision` with a boolean ``valid`` flag and the scenario's
action keys, be deterministic (same inputs -> same action, validity and state) and leave
its inputs untouched. Policies that read a forecast must also answer ``forecast=None``.

A scenario may provide ``example_frame()`` (a classmethod returning a small canonical
frame); otherwise the frames below are used.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pandas as pd
import pytest

from models.forecast import Forecast
from policies import registry
from policies.base import Decision
from policies.pipeline import forecaster_for
from traces.replay.base import get_scenario

registry.load_all()
CASES = sorted(registry._REGISTRY)  # (scenario, name)

#: Action keys a valid decision must carry, per scenario (when the class does not say).
ACTION_KEYS = {"vm": {"replicas"}, "serverless": {"warm"}, "power": {"caps"}}


def _vm_frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    t = np.arange(900.0)
    d = 20 + 15 * np.sin(t / 90.0) + rng.gamma(2.0, 2.0, t.size)
    d[400:430] *= 4  # a burst, so panic / scale-up paths run
    f = pd.DataFrame({"entity": "svc", "metric": "cpu_cores", "ts": t, "value": d})
    f.attrs["step"] = 1.0
    return f


def _serverless_frame() -> pd.DataFrame:
    rng = np.random.default_rng(8)
    inv = rng.poisson([0.2, 3.0, 40.0, 0.05], size=(90, 4)).astype(float)  # (T, F)
    ents = [f"f{i}" for i in range(4)]
    f = pd.DataFrame({
        "entity": np.repeat(ents, 90), "metric": "invocations",
        "ts": np.tile(60.0 * np.arange(90), 4), "value": inv.T.ravel(),
    })
    f.attrs.update(step=60.0, kind="function", static={
        e: {"duration_ms": d, "memory_mb": m}
        for e, d, m in zip(ents, (120.0, 900.0, 2500.0, 60_000.0), (128.0, 256.0, 512.0, 1024.0),
                           strict=True)})
    return f


def _power_frame() -> pd.DataFrame:
    rng = np.random.default_rng(9)
    t = 10.0 * np.arange(360)
    rows = [pd.DataFrame({"entity": f"server-{i}", "metric": "power_w", "ts": t,
                          "value": 300 + 150 * rng.random(t.size)}) for i in range(4)]
    f = pd.concat(rows, ignore_index=True)
    f.attrs.update(step=10.0, kind="server")
    return f


FRAMES = {"vm": _vm_frame, "serverless": _serverless_frame, "power": _power_frame}


def same(a, b) -> bool:
    """Deep equality over dicts, sequences, arrays, Forecasts and dataclasses."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
    if isinstance(a, Forecast):
        return (isinstance(b, Forecast) and same(a.samples, b.samples) and a.start == b.start
                and a.step == b.step and a.indicators == b.indicators)
    if dataclasses.is_dataclass(a) and not isinstance(a, type):
        return type(a) is type(b) and same(dataclasses.asdict(a), dataclasses.asdict(b))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return (type(a) is type(b) and len(a) == len(b)
                and all(same(x, y) for x, y in zip(a, b, strict=True)))
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


def _recorded_calls(scenario: str, name: str) -> list[tuple]:
    try:
        sc_cls = get_scenario(scenario)
    except KeyError:
        pytest.skip(f"scenario module {scenario!r} not written yet")
    make = getattr(sc_cls, "example_frame", None) or FRAMES[scenario]
    sc = sc_cls()
    data = sc.prepare(make())
    policy = registry.create(name, scenario)
    calls: list[tuple] = []
    inner = policy.decide

    def recording(spec, obs, forecast, now, memory=None):
        calls.append(copy.deepcopy((spec, obs, forecast, now, memory)))
        return inner(spec, obs, forecast, now, memory)

    policy.decide = recording  # the scenario calls the instance attribute
    sc.run(policy, data, seed=0, forecaster=forecaster_for(policy, 0))
    assert calls, f"{scenario}/{name}: the scenario never called decide"
    pick = np.unique(np.linspace(0, len(calls) - 1, num=min(12, len(calls))).astype(int))
    return [calls[i] for i in pick]


def _check(decision, scenario, name, spec):
    assert isinstance(decision, Decision), f"{scenario}/{name} returned {type(decision)}"
    assert isinstance(decision.valid, bool | np.bool_)
    assert isinstance(decision.action, dict)
    assert isinstance(decision.why, str) and isinstance(decision.details, dict)
    keys = getattr(get_scenario(scenario), "action_keys", None) or ACTION_KEYS.get(scenario)
    if decision.valid and keys:
        assert set(keys) <= set(decision.action), f"{scenario}/{name}: {decision.action}"
    if scenario == "vm" and decision.valid:
        n = decision.action["replicas"]
        assert isinstance(n, int | np.integer)
        assert spec.min_replicas <= n <= spec.max_replicas
    if scenario == "serverless" and decision.valid:
        warm = np.asarray(decision.action["warm"])
        assert warm.shape == (len(spec.entities),) and np.all(warm >= 0)
    if scenario == "power" and decision.valid:
        caps = np.asarray(decision.action["caps"], dtype=float)
        assert caps.shape == (spec.servers,) and not np.any(np.isnan(caps))
        assert np.all(caps > 0)


@pytest.mark.parametrize(("scenario", "name"), CASES, ids=[f"{s}/{n}" for s, n in CASES])
def test_policy_honours_the_decision_contract(scenario, name):
    for args in _recorded_calls(scenario, name):
        snapshot = copy.deepcopy(args)
        first = registry.create(name, scenario).decide(*args)
        _check(first, scenario, name, args[0])
        assert same(args, snapshot), f"{scenario}/{name} mutated its inputs"
        second = registry.create(name, scenario).decide(*copy.deepcopy(snapshot))
        assert first.valid == second.valid
        assert same(first.action, second.action), f"{scenario}/{name} is not deterministic"
        assert same(first.state, second.state)
        if registry.get(name, scenario).needs_forecast:
            spec, obs, _, now, memory = copy.deepcopy(snapshot)
            blind = registry.create(name, scenario).decide(spec, obs, None, now, memory)
            _check(blind, scenario, name, spec)
            assert blind.fallback or not blind.valid, (
                f"{scenario}/{name} decided without a forecast but did not say it fell back")


def test_the_vm_baselines_are_registered():
    assert {"hpa", "kpa", "static-peak", "oracle"} <= set(registry.names("vm"))
