"""Parity: the daemon decides what the replay decides, from the same samples.

A replay of a real trace slice runs each scenario with ``bayes`` and one peer, recording
every call of the shared :func:`policies.pipeline.step` (observation in, decision and desired
setting out). The same samples then go into a real store (SQLite and PostgreSQL) — demand
or invocations or the power each server drew, plus, for vm, the ready and requested replicas
as the cluster would report them — and the daemon's own path decides at every recorded time:
its collector reads the store, the same step runs, and the policy's memory and forecaster
state cross the database as JSON between calls. Every decision must match: validity,
fallback, the ``why`` sentence, the action, every number in its details (probabilities,
expected costs, the learnt risk) and the desired setting.

End to end, a slice fed over HTTP period by period on a simulated clock, decided by the
scheduler's own forecast job, must leave an action log equal to the replay's setting changes.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest

import traces
from policies import pipeline, registry
from policies.pipeline import forecaster_for
from service import decisions, migrate, targets
from service.decisions import jsonable
from service.ingest import Batch
from service.store import decisions as decision_store
from service.store import samples as sample_store
from service.store import targets as target_store
from service.store.db import Store
from traces.replay.base import get_scenario


def _record(monkeypatch, module) -> list[dict]:  # noqa: ANN001
    """Record every step the replay module makes."""
    calls: list[dict] = []
    real = pipeline.step

    def recording(policy, forecaster, spec, obs, memory, now):  # noqa: ANN001, ANN202
        dec, desired, mem = real(policy, forecaster, spec, obs, memory, now)
        calls.append({"now": now, "obs": obs, "spec": spec, "valid": bool(dec.valid),
                      "fallback": bool(dec.fallback), "why": dec.why,
                      "action": jsonable(dec.action), "details": jsonable(dec.details),
                      "desired": desired})
        return dec, desired, mem

    monkeypatch.setattr(module, "step_policy", recording)
    return calls


def _ingest(store: Store, rows: list[tuple[str, str, str, int, float]]) -> None:
    """Store (entity, kind, metric, ts, value) rows through the ingest path's store function."""
    for i in range(0, len(rows), 20_000):
        chunk = rows[i:i + 20_000]
        sample_store.ingest(store, Batch(
            keys=[(e, m) for e, _, m, _, _ in chunk], ts=[t for *_, t, _ in chunk],
            values=[v for *_, v in chunk], kinds={e: k for e, k, *_ in chunk},
            first_item={}, labels={}, units={}))


def _open(settings_factory, **kw) -> Store:  # noqa: ANN001
    settings = settings_factory(**kw)
    migrate.upgrade(settings)
    return Store(settings)


def _declare(store: Store, body: dict) -> object:
    from pydantic import TypeAdapter

    targets.declare(store, TypeAdapter(targets.TargetIn).validate_python(body))
    with store.sessions() as session:
        return target_store.get_target(session, body["name"])


def _compare(store: Store, target, calls: list[dict], desired_of,  # noqa: ANN001
             reaffirm_s: int | None = None) -> None:
    """Decide at every recorded time and compare; with ``reaffirm_s``, also decide that many
    seconds later within the same step, which must re-affirm, not decide again."""
    assert len(calls) > 50
    for i, call in enumerate(calls):
        now = int(call["now"])
        assert now == call["now"]
        out = decisions.decide_target(store, target, now)
        with store.sessions() as session:
            rec = decision_store.latest_decision(session, target.id)
        want = desired_of(call)
        details = {k: v for k, v in (rec.details or {}).items() if k != "step_start_s"}
        got = {"valid": rec.valid, "fallback": rec.fallback, "why": rec.why,
               "action": rec.action, "details": details, "desired": rec.desired}
        exp = {"valid": call["valid"], "fallback": call["fallback"], "why": call["why"][:2000],
               "action": call["action"], "details": call["details"], "desired": want}
        assert got == exp, f"decision {i} at t={now - int(calls[0]['now'])} s differs"
        assert out.desired == want
        if reaffirm_s is not None:
            again = decisions.decide_target(store, target, now + reaffirm_s)
            with store.sessions() as session:
                rec = decision_store.latest_decision(session, target.id)
            assert rec.computed_at == now + reaffirm_s and rec.why == exp["why"]
            assert again.desired == want


def _t0(duration_s: float, step: int) -> int:
    """A start so the slice ends a few minutes before now, on the step grid."""
    t0 = int(time.time() - duration_s - 600)
    return t0 - t0 % step


# ----------------------------------------------------------------------------- vm


def _llm_demand(step: int, limit: int | None = None) -> tuple[np.ndarray, int, pd.DataFrame]:
    """The bundled Azure LLM code trace as requests/s per ``step`` bucket, ending near now."""
    raw = traces.load(traces.resolve("azure-llm-code"))
    req = raw[raw["metric"] == "requests"]
    secs = np.floor(req["ts"].to_numpy() - req["ts"].min()).astype(np.int64)
    per_s = np.bincount(secs, weights=req["value"].to_numpy())
    n = len(per_s) // step if limit is None else min(len(per_s) // step, limit)
    demand = per_s[: n * step].reshape(n, step).mean(axis=1)
    t0 = _t0(n * step, step)
    frame = pd.DataFrame({"entity": "llm", "metric": "requests",
                          "ts": t0 + step * np.arange(n, dtype=float), "value": demand})
    frame.attrs["step"] = float(step)
    return demand, t0, frame


@pytest.mark.parametrize("policy", ["bayes", "hpa"])
def test_vm_daemon_decides_as_the_replay(policy, settings_factory, monkeypatch):  # noqa: ANN001
    import traces.replay.vm as vm_mod

    step = 15
    demand, t0, frame = _llm_demand(step)
    n = len(demand)
    cap = float(demand.max()) / 6
    sc = get_scenario("vm")(capacity=cap, boot_s=30.0, sync_s=float(step), min_replicas=1,
                            max_replicas=50)
    params = {"target_violation": 0.02} if policy == "bayes" else {}
    pol = registry.create(policy, "vm", **params)
    calls = _record(monkeypatch, vm_mod)
    sc.run(pol, sc.prepare(frame), seed=0, forecaster=forecaster_for(pol, 0))

    store = _open(settings_factory, forecast_step_s=step, forecast_interval_s=float(step),
                  decision_history_s=float(n * step + 3600))
    try:
        rows = [("llm", "vm", "requests", int(t0 + step * j), float(v))
                for j, v in enumerate(demand)]
        # what the cluster reports at each decision: ready and requested replicas
        for c in calls:
            rows.append(("llm-deploy", "vm", "ready", int(c["now"]), float(c["obs"].ready)))
            rows.append(("llm-deploy", "vm", "requested", int(c["now"]),
                         float(c["obs"].replicas)))
        _ingest(store, rows)
        target = _declare(store, {
            "kind": "scaling", "name": "llm", "entity": "llm", "metric": "requests",
            "capacity": cap, "min_replicas": 1, "max_replicas": 50, "boot_s": 30,
            "policy": policy, "params": params, "ready_metric": "ready",
            "requested_metric": "requested", "replicas_entity": "llm-deploy",
            **({"target_violation": 0.02} if policy == "bayes" else {}),
        })
        _compare(store, target, calls, lambda c: c["desired"].as_dict())
    finally:
        store.close()


# ----------------------------------------------------------------------------- serverless


@pytest.mark.parametrize("policy", ["bayes", "keepalive-10m"])
def test_serverless_daemon_decides_as_the_replay(policy, settings_factory, monkeypatch):  # noqa: ANN001
    import traces.replay.serverless as sl_mod

    raw = traces.load(traces.resolve("azure-functions-2019"))
    wide = raw.pivot_table(index="ts", columns="entity", values="value", fill_value=0)
    active = (wide > 0).mean()
    fn = str(active[(active > 0.2) & (active < 0.6)].index[0])  # an intermittent function
    # a shorter daemon window than the slice, so it slides (the forecaster state must follow)
    monkeypatch.setattr(decisions, "SERVERLESS_HISTORY_MIN", 90)
    minutes = 150
    counts = wide[fn].to_numpy()[:minutes]
    static = raw.attrs["static"][fn]
    t0 = _t0(minutes * 60, 60)
    frame = pd.DataFrame({"entity": fn, "metric": "invocations",
                          "ts": t0 + 60.0 * np.arange(minutes), "value": counts})
    frame.attrs.update(step=60.0, kind="function", static={fn: static})
    sc = get_scenario("serverless")()
    pol = registry.create(policy, "serverless")
    calls = _record(monkeypatch, sl_mod)
    sc.run(pol, sc.prepare(frame), seed=0, forecaster=forecaster_for(pol, 0))

    store = _open(settings_factory)
    try:
        _ingest(store, [(fn, "function", "invocations", int(t0 + 60 * j), float(v))
                        for j, v in enumerate(counts)])
        target = _declare(store, {
            "kind": "serverless", "name": "fn", "entity": fn,
            "memory_mb": float(static["memory_mb"]), "duration_ms": float(static["duration_ms"]),
            "policy": policy,
        })

        def desired(c: dict) -> dict:
            return {} if c["desired"] is None else {"warm": int(c["desired"].warm[0])}

        # within a step the decision is re-affirmed, not made again (the forecaster and the
        # policy see each step once, or later decisions would drift from the replay's)
        _compare(store, target, calls, desired, reaffirm_s=30)
    finally:
        store.close()


# ----------------------------------------------------------------------------- power


@pytest.mark.parametrize("policy", ["bayes", "polca"])
def test_power_daemon_decides_as_the_replay(policy, settings_factory, monkeypatch):  # noqa: ANN001
    import traces.replay.power as pw_mod

    step = 10
    raw = traces.load(traces.resolve("alibaba-datacenter-10s"))
    cpu = raw[raw["metric"] == "cpu_util"].sort_values("ts")
    n_t = 180  # half an hour at 10 s
    t0 = _t0(n_t * step, step)
    frame = pd.DataFrame({"entity": "machines", "metric": "cpu_util",
                          "ts": t0 + step * np.arange(n_t, dtype=float),
                          "value": cpu["value"].to_numpy()[:n_t]})
    frame.attrs.update(step=float(step), kind="server")
    sc = get_scenario("power")(budget_servers=4, servers=6, delay_s=20.0)
    data = sc.prepare(frame)
    pol = registry.create(policy, "power")
    calls = _record(monkeypatch, pw_mod)
    sc.run(pol, data, seed=0, forecaster=forecaster_for(pol, 0))
    drawn = calls[-1]["obs"].history  # (T-1, N) what each server drew, after caps

    store = _open(settings_factory, forecast_step_s=step, forecast_interval_s=float(step),
                  decision_history_s=float(n_t * step + 3600))
    try:
        ids = list(data.server_ids)
        rows = [(s, "server", "power_w", int(t0 + step * j), float(drawn[j, i]))
                for j in range(drawn.shape[0]) for i, s in enumerate(ids)]
        _ingest(store, rows)
        target = _declare(store, {
            "kind": "power", "name": "row", "servers": ids, "budget_w": data.budget_w,
            "p_max_w": data.p_max_w, "p_idle_w": data.p_idle_w, "delay_s": 20.0,
            "priorities": {s: "low" for s, lo in zip(ids, data.low_priority, strict=True)
                           if lo},
            "policy": policy,
        })

        def desired(c: dict) -> dict:
            caps = c["desired"].caps
            return {"caps": {s: float(w) for s, w in zip(ids, caps, strict=True)
                             if math.isfinite(w)}}

        _compare(store, target, calls, desired)
    finally:
        store.close()


# ----------------------------------------------------------------------------- end to end


def test_daemon_jobs_fed_over_http_on_a_simulated_clock_log_the_replays_actions(
    http, store, monkeypatch  # noqa: ANN001
):
    """The real trace slice arrives over HTTP period by period, the scheduler's forecast job
    decides at each simulated time, and the action log equals the replay's setting changes."""
    import traces.replay.vm as vm_mod
    from service.scheduler import DaemonContext, run_once
    from tests.daemon.conftest import bearer

    step = int(store.settings.forecast_step_s)
    assert store.settings.forecast_interval_s == step
    demand, _, frame = _llm_demand(step, limit=120)  # half an hour
    n = len(demand)
    cap = float(demand.max()) / 5
    sc = get_scenario("vm")(capacity=cap, boot_s=45.0, sync_s=float(step), min_replicas=1,
                            max_replicas=40)
    pol = registry.create("hpa", "vm")
    calls = _record(monkeypatch, vm_mod)
    sc.run(pol, sc.prepare(frame), seed=0, forecaster=forecaster_for(pol, 0))
    assert len(calls) == n

    body = {"kind": "scaling", "name": "llm", "entity": "llm", "metric": "requests",
            "capacity": cap, "min_replicas": 1, "max_replicas": 40, "boot_s": 45,
            "policy": "hpa", "ready_metric": "ready", "requested_metric": "requested",
            "replicas_entity": "llm-deploy"}
    assert http.post("/v1/targets", json=body).status_code == 201
    ctx = DaemonContext(store)
    expected, prev = [], None
    for j, c in enumerate(calls):
        now = int(c["now"])
        samples = [{"entity": "llm-deploy", "kind": "vm", "metric": m, "ts": now, "value": v}
                   for m, v in (("ready", c["obs"].ready), ("requested", c["obs"].replicas))]
        if j:  # the bucket that completed since the last period
            samples.append({"entity": "llm", "kind": "vm", "metric": "requests",
                            "ts": now - step, "value": float(demand[j - 1])})
        r = http.post("/v1/metrics", json={"samples": samples}, headers=bearer("ingest"))
        assert r.status_code == 200, r.text
        assert run_once(ctx, "forecast", now) == "ok"
        want = c["desired"].as_dict()
        if want != prev:
            expected.append((now, want))
        prev = want
    acts = http.get("/v1/actions", params={"target": "llm", "limit": 1000}).json()["actions"]
    got = [(a["created_at_unix"], {k: v["to"] for k, v in a["changes"].items()}) for a in acts]
    assert len(expected) > 3
    assert got == expected
