"""A decision for every declared target, through the very ``decide`` the replay calls.

After each forecast refresh the scheduler calls :func:`decide_all`. For each target the
daemon builds ``spec`` and ``state`` in the shapes of the replay scenario the target maps to
(``traces/replay/vm.py``, ``serverless.py``, ``power.py``; the keys below are theirs), calls
``policy.decide(spec, state, forecast, now)`` and interprets ``Decision.action`` as the
replay does:

* **scaling** (vm): ``demand`` = the last ``forecast_context_steps`` complete buckets of
  ``forecast_step_s`` seconds of the target's metric (gaps hold the previous value; buckets
  before the first sample are left out), ``demand_cumsum``, ``capacity``, ``min_replicas``,
  ``max_replicas``, ``step_s``, ``boot_s``, ``sync_s`` (= the refresh period),
  ``start_s`` (time of ``demand[0]``). The daemon does not see pods boot, so ``ready`` and
  ``replicas`` are both the replicas it last recommended (first time: ``ceil(latest demand
  / capacity)`` within the bounds). The forecast is the stored forecast of the metric when
  it is at most three refresh periods old, else the policy's own online forecaster over
  ``demand`` (what the replay feeds it). Action ``{"replicas": n}``, clipped to the bounds.
* **serverless**: one function, one-minute steps; ``history`` ``(t, 1)`` of required
  concurrency ``c = 0`` if ``n = 0`` else ``max(1, ceil(n·d/Δ))`` from the invocations per
  minute of the last 6 hours (missing minutes count zero), ``invocations_last``,
  ``warm_last`` (the warm count last recommended) and ``memory``. The forecast comes from the
  policy's own online forecaster over ``history``, as in the replay. Action
  ``{"warm": [w]}``.
* **power**: ``servers``, ``server_ids``, ``budget_w``, ``p_max_w``, ``p_idle_w``,
  ``low_priority``, ``priority``, ``step_s``, ``delay_s``; ``state`` with the observed power
  per server (mean of the last complete bucket; a server with no sample yet reads as idle),
  row power, the caps last commanded and their history. Action ``{"caps": ...}`` as an array
  (``inf`` = no cap) or a mapping; the stored setting lists finite caps by server name.

An invalid decision keeps the previous setting (never a scale-down) and, before any setting
was recommended, recommends nothing (an empty ``desired``, no action) rather than the
minimum, which could scale an existing deployment down; a policy that raises is
caught and recorded as an invalid fallback decision with the error as ``why`` — never a 500
and never a crashed job. When the desired setting differs from the previous one an action is
logged (:func:`service.repository.save_decision`; served by :mod:`service.actions`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np

from policies import memory as memory_codec
from policies.base import Decision
from policies.pipeline import forecast_or_none, forecaster_for
from service import forecasting, repository
from service.db import Store

log = logging.getLogger("tidewise.decisions")

#: History a serverless decision reads (one-minute steps): the hybrid-histogram's 4 h range
#: plus margin.
SERVERLESS_HISTORY_MIN = 360
SERVERLESS_STEP_S = 60


def jsonable(obj: Any) -> Any:  # noqa: ANN401
    """``obj`` with numpy values as Python ones and non-finite floats as None."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)


def pack_memory(memory: Any) -> Any:  # noqa: ANN401
    """Store the policy's ``Decision.state`` as plain JSON (:mod:`policies.memory`, no pickle).

    Memory that is not plain data is a policy bug: it is logged and dropped (the policy then
    starts afresh next period) rather than failing the decision.
    """
    try:
        return memory_codec.dump(memory)
    except memory_codec.MemoryFormatError as exc:
        log.warning("policy memory not stored: %s", exc)
        return None


def unpack_memory(stored: Any) -> Any:  # noqa: ANN401
    """Inverse of :func:`pack_memory`; a row in another format restarts the policy's memory."""
    if not stored:
        return None
    if isinstance(stored, dict) and set(stored) == {"pickle"}:
        log.warning("stored policy memory is in the retired pickle format; never unpickled, "
                    "the policy starts afresh")
        return None
    try:
        return memory_codec.load(stored)
    except (memory_codec.MemoryFormatError, KeyError, TypeError, ValueError) as exc:
        log.warning("stored policy memory is unreadable (%s); the policy starts afresh", exc)
        return None


@dataclasses.dataclass
class Outcome:
    """One target's decision run."""

    target: str
    desired: dict[str, Any]
    valid: bool
    fallback: bool
    why: str
    action_id: int | None = None


def _held(values: np.ndarray) -> np.ndarray:
    """Forward-fill NaN (hold the last value), dropping the NaN before the first value."""
    ok = np.isfinite(values)
    if not ok.any():
        return values[:0]
    v = values[int(np.argmax(ok)):]
    idx = np.where(np.isfinite(v), np.arange(len(v)), 0)
    np.maximum.accumulate(idx, out=idx)
    return v[idx]


def _stored_forecast(store: Store, entity: str, metric: str, now: int) -> Any:  # noqa: ANN401
    with store.sessions() as session:
        try:
            rec = repository.latest_forecast(session, entity, metric)
        except repository.NotFoundError:
            return None
    if now - rec.computed_at > 3 * store.settings.forecast_interval_s:
        return None
    return forecasting.to_forecast(rec, "demand")


def _online(policy: Any, history: np.ndarray, now: float, step: float, horizon: int) -> Any:  # noqa: ANN401
    """Call the policy's replay forecaster over ``history`` (None when it has nothing to say).

    The forecaster is chosen as in replay (:func:`policies.pipeline.forecaster_for`), so
    a policy decides in the daemon on the forecasts it was replayed with.
    """
    fc = forecaster_for(policy, 0)
    return None if fc is None else forecast_or_none(fc, history, now, step, horizon)


# --------------------------------------------------------------------------- per scenario


def _vm(store: Store, target: Any, policy: Any, prev: dict[str, Any] | None, now: int,  # noqa: ANN401
        memory: Any) -> tuple[Decision, dict[str, Any]]:
    s = store.settings
    sp = target.spec
    step = s.forecast_step_s
    lo, hi = int(sp["min_replicas"]), int(sp["max_replicas"])
    with store.sessions() as session:
        ts, values = forecasting.bucketed(session, sp["entity"], sp["metric"], now, step,
                                          s.forecast_context_steps)
    demand = _held(values)
    start_s = float(ts[len(ts) - len(demand)]) if len(demand) else float(now)
    cap = float(sp["capacity"])
    if prev and "replicas" in prev:
        current = int(prev["replicas"])
    else:
        first = math.ceil(float(demand[-1]) / cap - 1e-9) if len(demand) else lo
        current = min(hi, max(lo, first))
    cs = np.concatenate(([0.0], np.cumsum(demand)))
    spec = {
        "capacity": cap, "ready": current, "replicas": current,
        "min_replicas": lo, "max_replicas": hi, "step_s": float(step),
        "demand": demand, "demand_cumsum": cs,
        "boot_s": float(sp["boot_s"]), "sync_s": float(s.forecast_interval_s),
        "start_s": start_s,
    }
    forecast = None
    if policy.needs_forecast and len(demand):
        forecast = _stored_forecast(store, sp["entity"], sp["metric"], now)
        if forecast is None:
            horizon = max(1, math.ceil((float(sp["boot_s"]) + s.forecast_interval_s) / step))
            forecast = _online(policy, demand.reshape(-1, 1), float(now), float(step), horizon)
    dec = policy.decide(spec, memory, forecast, float(now))
    if dec.valid:
        want = int(dec.action["replicas"])
        desired = {"replicas": hi if want > hi else (lo if want < lo else want)}
    else:  # keep the setting; with none recommended yet, recommend nothing
        desired = {"replicas": current} if prev else {}
    return dec, desired


def _serverless(store: Store, target: Any, policy: Any, prev: dict[str, Any] | None,  # noqa: ANN401
                now: int, memory: Any) -> tuple[Decision, dict[str, Any]]:
    sp = target.spec
    step = SERVERLESS_STEP_S
    with store.sessions() as session:
        try:
            _, inv = forecasting.bucketed(session, sp["entity"], sp["metric"], now, step,
                                          SERVERLESS_HISTORY_MIN, agg="sum")
        except repository.NotFoundError:
            inv = np.zeros(0)
    inv = np.nan_to_num(inv, nan=0.0)
    d_ms, mem = float(sp["duration_ms"]), float(sp["memory_mb"])
    conc = np.where(inv > 0, np.maximum(1, np.ceil(inv * d_ms / 1000.0 / step - 1e-9)), 0)
    hist = conc.astype(np.int64).reshape(-1, 1)  # (t, 1)
    hist.flags.writeable = False
    t = len(hist)
    warm_last = int(prev["warm"]) if prev and "warm" in prev else 0
    spec = {
        "entities": (target.name,), "duration_ms": np.array([d_ms]),
        "memory_mb": np.array([mem]), "step_s": float(step),
    }
    state = {
        "t": t, "history": hist,
        "invocations_last": np.array([int(inv[-1])] if t else [0], dtype=np.int64),
        "warm_last": np.array([warm_last], dtype=np.int64), "memory": memory,
    }
    forecast = None
    if policy.needs_forecast and t > 0:
        horizon = int(policy.params.get("horizon", 1) or 1)
        forecast = _online(policy, hist, float(now), float(step), horizon)
    dec = policy.decide(spec, state, forecast, float(now))
    if dec.valid:
        w = np.ceil(np.asarray(dec.action["warm"], dtype=np.float64).reshape(-1)[0] - 1e-9)
        desired = {"warm": max(0, int(w))}
    else:
        desired = {"warm": warm_last} if prev else {}
    return dec, desired


def _power(store: Store, target: Any, policy: Any, prev: dict[str, Any] | None,  # noqa: ANN401
           now: int, memory: Any) -> tuple[Decision, dict[str, Any]]:
    s = store.settings
    sp = target.spec
    step = s.forecast_step_s
    servers = list(sp["servers"])
    n = len(servers)
    p_idle = float(sp["p_idle_w"])
    cols = []
    with store.sessions() as session:
        for name in servers:
            try:
                _, v = forecasting.bucketed(session, name, sp["metric"], now, step,
                                            s.forecast_context_steps)
            except repository.NotFoundError:
                v = np.full(s.forecast_context_steps, np.nan)
            cols.append(v)
    obs = np.stack(cols, axis=1)  # (T, N)
    seen = np.isfinite(obs).any(axis=1)
    obs = obs[int(np.argmax(seen)):] if seen.any() else obs[:0]
    for j in range(n):  # hold each server's last value; idle before its first sample
        col = obs[:, j]
        held = _held(col)
        obs[:, j] = np.concatenate([np.full(len(col) - len(held), p_idle), held])
    t = len(obs)
    low = np.array([sp["priorities"].get(x, "high") == "low" for x in servers])
    caps_prev = dict((prev or {}).get("caps", {}))
    caps = np.array([float(caps_prev.get(x, math.inf)) for x in servers])
    row = obs.sum(axis=1)
    spec = {
        "servers": n, "server_ids": tuple(servers), "budget_w": float(sp["budget_w"]),
        "p_max_w": float(sp["p_max_w"]), "p_idle_w": p_idle, "low_priority": low,
        "priority": np.where(low, 0.0, 1.0), "step_s": float(step),
        "delay_s": float(sp["delay_s"]),
    }
    state = {
        "t": t, "row_power_w": float(row[-1]) if t else 0.0,
        "server_power_w": obs[-1] if t else np.zeros(n),
        "caps_w": caps.copy(), "capped": np.isfinite(caps), "history_row_w": row,
        "memory": memory,
    }
    forecast = None
    if policy.needs_forecast and t > 0:
        horizon = int(policy.params.get("horizon", 1) or 1)
        forecast = _online(policy, obs, float(now), float(step), horizon)
    dec = policy.decide(spec, state, forecast, float(now))
    if dec.valid:
        desired = {"caps": _caps(dec.action["caps"], servers)}
    else:
        desired = {"caps": caps_prev} if prev else {}
    return dec, desired


def _caps(raw: Any, servers: list[str]) -> dict[str, float]:  # noqa: ANN401
    """Turn a power action (array by position or mapping by id/position) as finite caps by name."""
    out: dict[str, float] = {}
    if isinstance(raw, dict):
        for key, w in raw.items():
            name = servers[key] if isinstance(key, (int, np.integer)) else str(key)
            if math.isfinite(float(w)):
                out[name] = round(float(w), 3)
        return out
    arr = np.asarray(raw, dtype=np.float64).reshape(-1)
    for name, w in zip(servers, arr, strict=False):
        if math.isfinite(w):
            out[name] = round(float(w), 3)
    return out


_BUILDERS = {"vm": _vm, "serverless": _serverless, "power": _power}


def decide_target(store: Store, target: Any, now: int, telemetry: Any = None) -> Outcome:  # noqa: ANN401
    """Decide for one target and store the decision (and an action when it changes)."""
    from policies import registry

    with store.sessions() as session:
        rec = repository.latest_decision(session, target.id)
    prev = dict(rec.desired) if rec is not None and rec.desired else None
    memory = unpack_memory(rec.memory) if rec is not None else None
    try:
        policy = registry.create(target.policy, target.kind, **target.params)
        dec, desired = _BUILDERS[target.kind](store, target, policy, prev, now, memory)
    except Exception as exc:  # noqa: BLE001 - a failing policy or forecaster: keep the setting
        log.warning("decision for target %r failed: %s: %s", target.name, type(exc).__name__, exc)
        dec = Decision(action={}, valid=False, fallback=True,
                       why=f"decision failed ({type(exc).__name__}: {exc}); setting kept",
                       details={"error": type(exc).__name__}, state=memory)
        desired = dict(prev) if prev else {}
    record = {
        "computed_at": now, "policy": target.policy, "valid": bool(dec.valid),
        "fallback": bool(dec.fallback), "why": str(dec.why)[:2000],
        "action": jsonable(dec.action), "details": jsonable(dec.details),
        "memory": pack_memory(dec.state), "desired": desired,
    }
    changed = bool(desired) and desired != prev
    action_id = repository.save_decision(store, target, record, now, changed, prev)
    if telemetry is not None:
        telemetry.decision(target.policy, dec.valid, dec.fallback, action_id is not None)
    return Outcome(target.name, desired, bool(dec.valid), bool(dec.fallback), record["why"],
                   action_id)


def decide_all(store: Store, now: int, telemetry: Any = None) -> list[Outcome]:  # noqa: ANN401
    """Decide for every declared target (one failing target never stops the others)."""
    with store.sessions() as session:
        targets = repository.list_targets(session)
    out = []
    for target in targets:
        try:
            out.append(decide_target(store, target, now, telemetry))
        except Exception:  # noqa: BLE001 - e.g. the store was busy: next period retries
            log.exception("storing the decision of %r failed", target.name)
    return out

