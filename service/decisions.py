"""A decision for every declared target, through the very path the replay runs.

After each forecast refresh the scheduler calls :func:`decide_all`. For each target a
*collector* turns the store into the scenario's typed ``Spec`` and ``Observation``
(:mod:`policies.scenarios`), and :func:`policies.pipeline.step` does the rest exactly as the
replay does: the forecaster chosen by :func:`policies.pipeline.forecaster_for`, the policy's
``decide``, and ``apply`` validating and clipping the action into the desired setting. Only
where observations come from differs (``tests/daemon/test_parity.py`` proves it):

* **scaling** (vm): ``demand`` = the complete buckets of ``forecast_step_s`` seconds of the
  target's metric over the last ``TIDEWISE_DECISION_HISTORY_S`` (gaps hold the previous
  value; buckets before the first sample are left out). ``ready`` and ``replicas``
  (requested) come from the world, each from the first of: (1) the target's ``ready_metric``
  / ``requested_metric`` (latest sample of ``replicas_entity``, e.g.
  ``kube_deployment_status_replicas_available`` through remote-write); (2) the ``ready`` /
  ``applied`` counts of the actuator's newest acknowledgement of the target's actions; both
  only while at most :data:`WORLD_MAX_AGE_S` (ten minutes) old. Without either the daemon
  assumes its last recommendation (first time: ``ceil(latest demand / capacity)`` within the
  bounds), and a missing ready count is the requested one. The requested count the world
  reports is also the setting in force that an invalid decision keeps. Decided every
  refresh period (``sync_s`` = ``TIDEWISE_FORECAST_INTERVAL_S``).
* **serverless**: one function, one-minute steps; ``history`` ``(t, 1)`` of required
  concurrency ``c = 0`` if ``n = 0`` else ``max(1, ceil(n·d/Δ))`` from the invocations per
  minute since the function's first sample (at most ``SERVERLESS_HISTORY_MIN`` minutes;
  missing minutes count zero).
* **power**: per-server power, buckets of ``forecast_step_s`` seconds over the last
  ``TIDEWISE_DECISION_HISTORY_S`` (a server with no sample yet reads as idle; gaps hold
  the last value), and the caps last commanded.

Serverless and power decide once per completed step, as the replay does; in between, the
stored decision is re-affirmed (its time refreshed, the policy not called again), so the
policy and its forecaster see each step exactly once. The policy's memory and its
forecaster's state are stored as plain JSON (:mod:`policies.memory`) and handed back on the
next call, so a fresh process continues where the last one stopped.

An invalid decision keeps the previous setting (never a scale-down) and, before any setting
was recommended, recommends nothing (an empty ``desired``, no action) rather than the
minimum, which could scale an existing deployment down; a policy that raises is caught and
recorded as an invalid fallback decision with the error as ``why`` — never a 500 and never a
crashed job. When the desired setting differs from the previous one an action is logged
(:func:`service.store.decisions.save_decision`; served by :mod:`service.actions`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from policies import memory as memory_codec
from policies.base import Decision
from policies.pipeline import contract, forecaster_for, step
from policies.scenarios import read_only
from service import forecasting
from service.store import decisions as decision_store
from service.store import samples as sample_store
from service.store import targets as target_store
from service.store.db import Store
from service.store.errors import NotFoundError

log = logging.getLogger("tidewise.decisions")

#: History a serverless decision reads (one-minute steps): the hybrid-histogram's 4 h range
#: plus margin.
SERVERLESS_HISTORY_MIN = 360
SERVERLESS_STEP_S = 60
#: How old (s) a report of the world may be and still count as the replicas requested and
#: ready now: a metric sample, or the counts of an actuator's acknowledgement.
WORLD_MAX_AGE_S = 600


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


def _latest(store: Store, entity: str, metric: str, now: int, max_age_s: int) -> float | None:
    """Return the newest sample of a series at or before ``now`` (None: none recent)."""
    with store.sessions() as session:
        try:
            res = sample_store.query_series(session, entity, metric, now - max_age_s, now)
        except NotFoundError:
            return None
    return float(res.points[-1][1]) if res.points else None  # ingest stores finite values


# --------------------------------------------------------------------------- collectors
# Each returns (spec, observation, step_start): step_start is the start of the step being
# decided for scenarios that decide once per completed step, else None.


def vm_window(settings: Any) -> tuple[int, int]:  # noqa: ANN401 - a Settings
    """(step s, buckets) of the demand window a scaling target's decision reads."""
    step = int(settings.forecast_step_s)
    return step, max(1, settings.decision_window_s // step)


def collect_vm(store: Store, target: Any, now: int, prev: dict[str, Any] | None,  # noqa: ANN401
               history: forecasting.History | None = None,
               acks: dict[str, Any] | None = None) -> tuple[Any, Any, int | None]:
    """Build the vm ``Spec`` and ``Observation`` of a scaling target from the store.

    The demand comes through ``history`` (default: the store and the sources of ``target``),
    so a target with a ``source`` reads it from its Prometheus-compatible API. ``acks``
    (optional): the actuators' latest counts by target name, read for many targets at once
    (:func:`service.store.decisions.latest_acks_counts`); a target not in it reads its own.

    Raises:
        service.promsource.SourceError: the source failed (the decision falls back).

    """
    c = contract("vm")
    s = store.settings
    sp = target.spec
    step, n = vm_window(s)
    history = history or forecasting.History.of(store, [target])
    try:
        ts, values = history.buckets(sp["entity"], sp["metric"], now, step, n)
    except NotFoundError:
        ts, values = np.zeros(0, dtype=np.int64), np.zeros(0)
    demand = read_only(np.ascontiguousarray(_held(values), dtype=np.float64))
    start_s = float(ts[len(ts) - len(demand)]) if len(demand) else float(now)
    spec = c.Spec(capacity=float(sp["capacity"]), min_replicas=int(sp["min_replicas"]),
                  max_replicas=int(sp["max_replicas"]), step_s=float(step),
                  boot_s=float(sp["boot_s"]), sync_s=float(s.forecast_interval_s))
    current = c.desired_from(prev)
    if current is not None:
        assumed = current.replicas
    else:
        first = math.ceil(float(demand[-1]) / spec.capacity - 1e-9) if len(demand) else 0
        assumed = min(spec.max_replicas, max(spec.min_replicas, first))
    world = sp.get("replicas_entity") or sp["entity"]
    ready = requested = None
    if sp.get("ready_metric"):
        ready = _latest(store, world, sp["ready_metric"], now, WORLD_MAX_AGE_S)
    if sp.get("requested_metric"):
        requested = _latest(store, world, sp["requested_metric"], now, WORLD_MAX_AGE_S)
    if ready is None or requested is None:  # next: what the actuator's last ack reported
        if acks is not None and target.name in acks:
            ack = acks[target.name]
        else:
            with store.sessions() as session:
                ack = decision_store.latest_ack_counts(session, target.name, now)
        if ack is not None and now - WORLD_MAX_AGE_S <= ack.at <= now:
            ready = ack.ready if ready is None else ready
            requested = ack.applied if requested is None else requested
    ready_n = int(round(ready)) if ready is not None else None
    requested_n = int(round(requested)) if requested is not None else None
    if requested_n is None:
        requested_n = max(assumed, ready_n) if ready_n is not None else assumed
    else:  # the setting in force, as the cluster reports it
        current = c.Desired(requested_n)
    if ready_n is None:
        ready_n = requested_n
    obs = c.Observation(demand=demand, start_s=start_s, ready=ready_n, replicas=requested_n,
                        current=current)
    return spec, obs, None


def collect_serverless(store: Store, target: Any, now: int, prev: dict[str, Any] | None,  # noqa: ANN401
                       history: forecasting.History | None = None
                       ) -> tuple[Any, Any, int | None]:
    """Build the serverless ``Spec`` and ``Observation`` of one function from the store."""
    c = contract("serverless")
    sp = target.spec
    step = SERVERLESS_STEP_S
    history = history or forecasting.History(store)
    try:
        _, inv = history.buckets(sp["entity"], sp["metric"], now, step,
                                 SERVERLESS_HISTORY_MIN, agg="sum")
    except NotFoundError:
        inv = np.zeros(0)
    seen = np.isfinite(inv)
    inv = np.nan_to_num(inv[int(np.argmax(seen)):] if seen.any() else inv[:0], nan=0.0)
    d_ms, mem = float(sp["duration_ms"]), float(sp["memory_mb"])
    spec = c.Spec(entities=(target.name,), duration_ms=np.array([d_ms]),
                  memory_mb=np.array([mem]), step_s=float(step))
    conc = c.required_concurrency(inv[:, None], spec.duration_ms, float(step))  # (t, 1)
    hist = read_only(conc)
    t = len(hist)
    current = c.desired_from(prev, spec)
    warm_last = current.warm if current is not None else np.zeros(1, dtype=np.int64)
    step_start = now - now % step
    obs = c.Observation(
        t=t, history=hist, invocations_last=np.array([int(inv[-1]) if t else 0]),
        warm_last=warm_last, start_s=float(step_start), current=current)
    return spec, obs, step_start


def collect_power(store: Store, target: Any, now: int, prev: dict[str, Any] | None,  # noqa: ANN401
                  history: forecasting.History | None = None) -> tuple[Any, Any, int | None]:
    """Build the power ``Spec`` and ``Observation`` of a row from the store."""
    c = contract("power")
    s = store.settings
    sp = target.spec
    step = int(s.forecast_step_s)
    servers = tuple(sp["servers"])
    p_idle = float(sp["p_idle_w"])
    n = max(1, s.decision_window_s // step)
    history = history or forecasting.History(store)
    cols = []
    for name in servers:
        try:
            _, v = history.buckets(name, sp["metric"], now, step, n)
        except NotFoundError:
            v = np.full(n, np.nan)
        cols.append(v)
    obs = np.stack(cols, axis=1)  # (T, N)
    seen = np.isfinite(obs).any(axis=1)
    obs = obs[int(np.argmax(seen)):] if seen.any() else obs[:0]
    for j in range(len(servers)):  # hold each server's last value; idle before its first
        col = obs[:, j]
        held = _held(col)
        obs[:, j] = np.concatenate([np.full(len(col) - len(held), p_idle), held])
    low = np.array([sp["priorities"].get(x, "high") == "low" for x in servers])
    spec = c.Spec(server_ids=servers, budget_w=float(sp["budget_w"]),
                  p_max_w=float(sp["p_max_w"]), p_idle_w=p_idle, low_priority=read_only(low),
                  step_s=float(step), delay_s=float(sp["delay_s"]))
    current = c.desired_from(prev, spec)
    caps = current.caps if current is not None else np.full(len(servers), np.inf)
    step_start = now - now % step
    seen_obs = c.Observation(t=len(obs), history=read_only(obs), caps_w=caps,
                             start_s=float(step_start), current=current)
    return spec, seen_obs, step_start


COLLECTORS = {"vm": collect_vm, "serverless": collect_serverless, "power": collect_power}


def _stored_memory(stored: Any) -> tuple[Any, Any]:  # noqa: ANN401
    """Split a stored memory into (policy memory, forecaster state)."""
    mem = unpack_memory(stored)
    if isinstance(mem, dict) and set(mem) == {"policy", "forecaster"}:
        return mem["policy"], mem["forecaster"]
    return None, None


@dataclasses.dataclass
class _Decided:
    """A decision made, not yet stored.

    What :func:`service.store.decisions.save_decision` and the Outcome need.
    """

    target: Any
    record: dict[str, Any]
    changed: bool
    prev: dict[str, Any] | None
    desired: dict[str, Any]
    valid: bool
    fallback: bool
    why: str


def decide_target(store: Store, target: Any, now: int, telemetry: Any = None,  # noqa: ANN401
                  history: forecasting.History | None = None) -> Outcome:
    """Decide for one target and store the decision (and an action when it changes).

    ``history`` is where collectors read series (default: the store and ``target``'s own
    source); a source that fails makes an invalid fallback decision saying why.
    """
    d = _decide(store, target, now, history)
    action_id = decision_store.save_decision(store, target, d.record, now, d.changed, d.prev)
    return _outcome(d, action_id, telemetry)


def _outcome(d: _Decided, action_id: int | None, telemetry: Any) -> Outcome:  # noqa: ANN401
    """Return the Outcome of a stored decision (telemetry counts it)."""
    if telemetry is not None:
        telemetry.decision(d.target.policy, d.valid, d.fallback, action_id is not None)
    return Outcome(d.target.name, d.desired, d.valid, d.fallback, d.why, action_id)


@dataclasses.dataclass
class Prefetched:
    """What the decisions of one period read from the store, read for all targets at once.

    Each field is None when its batch read failed (or was not made): each target then reads
    its own, as :func:`decide_target` does.
    """

    #: the latest decision by target id (:func:`service.store.decisions.latest_decisions`)
    latest: dict[int, Any] | None = None
    #: the actuators' latest counts by target name (``latest_acks_counts``)
    acks: dict[str, Any] | None = None
    #: stored forecast records by entity and metric
    #: (:func:`service.store.forecasts.entities_forecasts`)
    forecasts: dict[str, dict[str, Any]] | None = None

    @classmethod
    def read(cls, store: Store, targets: list[Any], now: int) -> Prefetched:
        """Read the three for ``targets``; a failing read leaves its field None (logged)."""
        from service.store import forecasts as forecast_store

        out = cls()
        vm = [t for t in targets if t.kind == "vm"]
        stored = sorted({t.spec["entity"] for t in vm
                         if t.spec.get("forecaster", "auto") == "stored"})
        reads = (
            ("latest", lambda s: decision_store.latest_decisions(s, [t.id for t in targets])),
            ("acks", lambda s: decision_store.latest_acks_counts(s, [t.name for t in vm], now)),
            ("forecasts", lambda s: forecast_store.entities_forecasts(s, stored)),
        )
        for field, read in reads:
            try:  # one failing read costs only its own batching
                with store.sessions() as session:
                    setattr(out, field, read(session))
            except Exception:  # noqa: BLE001 - e.g. the store was busy: targets read their own
                log.exception("reading the %s of %d targets at once failed", field, len(targets))
        return out


def _decide(store: Store, target: Any, now: int,  # noqa: ANN401
            history: forecasting.History | None = None,
            pre: Prefetched | None = None) -> _Decided:
    """Make one target's decision (see :func:`decide_target`), without storing it.

    ``pre`` (optional): what the period's decisions read beforehand for many targets at once
    (:class:`Prefetched`); what it lacks is read here.
    """
    from policies import registry

    if pre is not None and pre.latest is not None:
        rec = pre.latest.get(target.id)
    else:
        with store.sessions() as session:
            rec = decision_store.latest_decision(session, target.id)
    prev = dict(rec.desired) if rec is not None and rec.desired else None
    memory, fc_state = _stored_memory(rec.memory) if rec is not None else (None, None)
    fc = None
    try:
        policy = registry.create(target.policy, target.kind, **target.params)
        kw = {"acks": pre.acks} if pre is not None and target.kind == "vm" else {}
        spec, obs, step_start = COLLECTORS[target.kind](store, target, now, prev, history, **kw)
        if (step_start is not None and rec is not None and rec.details
                and rec.details.get("step_start_s") == step_start):
            # this step was decided already: re-affirm it, the policy sees each step once
            return _Decided(target, {"computed_at": now}, False, None, dict(rec.desired or {}),
                            bool(rec.valid), bool(rec.fallback), rec.why)
        chosen, choice = None, {}
        source = target.spec.get("forecaster", "auto") if target.kind == "vm" else None
        if source == "stored":
            chosen = forecasting.StoredForecast(
                store, target.spec["entity"], target.spec["metric"],
                max_age_s=3 * float(store.settings.forecast_interval_s),
                prefetched=pre.forecasts if pre is not None else None)
        elif source == "auto" and policy.needs_forecast:
            from service.choosing import chosen_forecaster

            chosen, choice = chosen_forecaster(store, target)
        fc = forecaster_for(policy, 0, chosen)
        if fc is not None and fc_state is not None and hasattr(fc, "load_state_dict"):
            try:
                fc.load_state_dict(fc_state)
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("forecaster state of %r unreadable (%s); starting afresh",
                            target.name, exc)
        when = float(step_start) if step_start is not None else float(now)
        dec, want, memory = step(policy, fc, spec, obs, memory, when)
        desired = (want.as_dict() if target.kind == "vm" else want.as_dict(spec)) if want else {}
        if step_start is not None:
            dec.details = {**dec.details, "step_start_s": step_start}
        if isinstance(chosen, forecasting.StoredForecast) and chosen.indicators:
            dec.details = {**dec.details, "forecast_indicators": list(chosen.indicators)}
        if choice:
            dec.details = {**dec.details, **choice}
    except Exception as exc:  # noqa: BLE001 - a failing policy or forecaster: keep the setting
        log.warning("decision for target %r failed: %s: %s", target.name, type(exc).__name__, exc)
        dec = Decision(action={}, valid=False, fallback=True,
                       why=f"decision failed ({type(exc).__name__}: {exc}); setting kept",
                       details={"error": type(exc).__name__}, state=memory)
        desired = dict(prev) if prev else {}
        memory = dec.state
    fc_out = fc.state_dict() if fc is not None and hasattr(fc, "state_dict") else fc_state
    record = {
        "computed_at": now, "policy": target.policy, "valid": bool(dec.valid),
        "fallback": bool(dec.fallback), "why": str(dec.why)[:2000],
        "action": jsonable(dec.action), "details": jsonable(dec.details),
        "memory": pack_memory({"policy": memory, "forecaster": fc_out}), "desired": desired,
    }
    changed = bool(desired) and desired != prev
    return _Decided(target, record, changed, prev, desired, bool(dec.valid), bool(dec.fallback),
                    record["why"])


def decide_all(store: Store, now: int, telemetry: Any = None,  # noqa: ANN401
               only: Callable[[Any], bool] | None = None,
               buckets: forecasting.BucketCache | None = None) -> list[Outcome]:
    """Decide for every declared target (one failing target never stops the others).

    ``only`` (optional) keeps the targets it accepts: the forecast job's shards
    (:mod:`service.sharding`). ``buckets`` (optional, the daemon's): read the targets'
    stored series through it (:class:`service.forecasting.BucketCache`, the same buckets).
    """
    with store.sessions() as session:
        targets = target_store.list_targets(session)
    if only is not None:
        targets = [t for t in targets if only(t)]
    history = forecasting.History.of(store, targets, buckets)
    pre = Prefetched.read(store, targets, now)  # what each would read, for all at once
    try:  # and the scaling targets' demand windows, through the cache
        history.prefetch([(t.spec["entity"], t.spec["metric"]) for t in targets
                          if t.kind == "vm"], now, *vm_window(store.settings))
    except Exception:  # noqa: BLE001 - e.g. the store was busy: targets read their own
        log.exception("reading the demand of %d targets at once failed", len(targets))
    made = []
    for target in targets:
        try:
            made.append(_decide(store, target, now, history, pre))
        except Exception:  # noqa: BLE001 - e.g. the store was busy: next period retries
            log.exception("the decision of %r failed", target.name)
    try:  # one transaction for the period's decisions
        ids = decision_store.save_decisions(
            store, [(d.target, d.record, now, d.changed, d.prev) for d in made])
        return [_outcome(d, i, telemetry) for d, i in zip(made, ids, strict=True)]
    except Exception:  # noqa: BLE001 - then one by one: one bad decision costs only itself
        log.exception("storing %d decisions at once failed; storing them one by one",
                      len(made))
    out = []
    for d in made:
        try:
            i = decision_store.save_decision(store, d.target, d.record, now, d.changed, d.prev)
        except Exception:  # noqa: BLE001 - e.g. the store was busy: next period retries
            log.exception("storing the decision of %r failed", d.target.name)
            continue
        out.append(_outcome(d, i, telemetry))
    return out

