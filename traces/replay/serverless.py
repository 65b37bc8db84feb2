"""The ``serverless`` replay scenario: warm instances per function, minute by minute.

Reference model (exact; the figures below are defined by it and nothing else)
-----------------------------------------------------------------------------
One step is one trace interval ``Δ`` (60 s for the Azure Functions 2019 trace). For each
function ``f`` with mean execution time ``d_f`` (ms) and memory ``m_f`` (MB), and ``n_t``
invocations in step ``t``:

* required concurrency ``c_t = 0`` when ``n_t = 0``, else ``max(1, ceil(n_t · d_f / Δ))``
  (the instance-time the step's invocations need, in whole instances, at least one);
* the policy sets the warm instances ``w_t`` at the start of step ``t`` from data up to
  ``t − 1`` only; nothing is warm before the trace starts, so any history-based policy has
  ``w_0 = 0``;
* cold starts ``cs_t = max(0, c_t − w_t)``; instances started cold stay warm for the rest of
  step ``t`` (they are counted once, in ``t``);
* idle warm memory ``wm_t = max(0, w_t − c_t) · m_f · Δ`` (MB·s).

A fixed keep-alive of ``K`` steps is ``w_t = max(c_{t−1}, …, c_{t−K})``.

Figures (:class:`RunResult.totals`): ``invocations`` (Σ n), ``cold_starts`` (Σ cs),
``cold_start_rate`` (cold starts / invocations), ``wasted_memory_gb_s`` (Σ wm / 1024, GB·s
of warm-but-idle memory), plus ``warm_memory_gb_s`` (Σ w·m·Δ / 1024), ``functions``,
``steps``, ``step_s``, ``fallback_steps`` (decisions that used a fallback rule) and
``invalid_steps`` (decisions flagged invalid; the previous setting is kept for those).
The timeline has per-step sums over functions: ``t_s``, ``concurrency`` (Σ c),
``warm`` (Σ w) and ``cold_starts``.

On the 670-function day of ``azure-functions-2019-invitro-samples/1340`` this model gives
the project's reference numbers: keep-alive 10 min → 6,723 cold starts (1.72 % of 391,015
invocations) and 1,556,630 GB·s; 20 min → 3,824 (0.98 %) and 1,986,092 GB·s
(``tests/replay/test_serverless_reference.py``).

Input
-----
A canonical frame with metric ``invocations`` (count per step) per function entity and, in
``frame.attrs["static"][function]``, ``duration_ms`` and ``memory_mb``. Missing steps of a
function count as zero invocations. ``frame.attrs["step"]`` gives Δ (else the spacing of the
timestamps; 60 s when there is a single step).

Policy interface (vectorised: one ``decide`` call per step covers every function)
----------------------------------------------------------------------------------
``decide(spec, obs, forecast, now, memory)`` with the typed contract of
:mod:`policies.scenarios.serverless`. ``spec`` (a ``Spec``, fixed for the run):
``entities`` (tuple of F function ids), ``duration_ms`` (F,), ``memory_mb`` (F,),
``step_s``; for policies with ``reads_future = True`` also ``peak_concurrency`` (F,) of the
whole trace.

``obs`` (an ``Observation``, built each step): ``t`` (step index), ``history`` — a
read-only view ``(t, F)`` of the required concurrency of every past step (``history[-1]``
is ``c_{t−1}``; empty at ``t = 0``), ``invocations_last`` (F,) = ``n_{t−1}``,
``warm_last`` (F,) = ``w_{t−1}``. ``memory``: the ``Decision.state`` the policy returned
last step (None at first). Policies keep no hidden state.

``forecast``: for ``needs_forecast`` policies, the replay forecaster's Forecast over the
concurrency history (indicators = function ids; None at ``t = 0``, when there is none);
for ``reads_future`` policies (the oracle) a one-sample Forecast holding the true ``c_t``
(model ``"truth"``); else None.

``Decision.action = {"warm": array (F,)}`` of non-negative integers (floats are rounded
up). An invalid decision (``valid=False``) keeps ``w_{t−1}``, never scales down.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from common.errors import InputError
from models.forecast import Forecast
from policies.base import Policy
from policies.pipeline import step as step_policy
from policies.scenarios import serverless as contract
from policies.scenarios.serverless import required_concurrency
from traces.replay.base import (
    RunResult,
    Scenario,
    read_only,
    register_scenario,
)

MB_PER_GB = 1024.0


@dataclass
class ServerlessData:
    """The arrays the serverless scenario simulates (from :meth:`ServerlessScenario.prepare`).

    Attributes:
        entities: function ids, (F,).
        ts: unix (or relative) seconds of each step's start, (T,).
        invocations: invocations per step, (T, F) int64.
        concurrency: required concurrency ``c_t`` per the reference model, (T, F) int64.
        duration_ms: mean execution time per function, (F,).
        memory_mb: memory per function, (F,).
        step_s: seconds per step.
        resolved: the resolved settings written beside the results.

    """

    entities: tuple[str, ...]
    ts: np.ndarray
    invocations: np.ndarray
    concurrency: np.ndarray
    duration_ms: np.ndarray
    memory_mb: np.ndarray
    step_s: float
    resolved: dict[str, Any] = field(default_factory=dict)


def build_frame(invocations: np.ndarray, duration_ms, memory_mb, *, step_s: float = 60.0,
                entities=None, start_s: float = 0.0) -> pd.DataFrame:
    """Make a canonical frame for this scenario from arrays (tests, benches, examples).

    Args:
        invocations: (T, F) invocations per step.
        duration_ms: (F,) mean execution time.
        memory_mb: (F,) memory.
        step_s: seconds per step.
        entities: F function ids (default ``f0``, ``f1``, …).
        start_s: timestamp of the first step.

    """
    inv = np.asarray(invocations, dtype=np.float64)
    n_t, n_f = inv.shape
    ents = [f"f{i}" for i in range(n_f)] if entities is None else [str(e) for e in entities]
    ts = start_s + step_s * np.arange(n_t)
    frame = pd.DataFrame({
        "entity": np.repeat(np.array(ents, dtype=object), n_t),
        "metric": "invocations",
        "ts": np.tile(ts, n_f),
        "value": inv.T.ravel(),  # entity-major
    })
    frame.attrs.update({
        "step": float(step_s), "kind": "function", "format": "arrays",
        "static": {e: {"duration_ms": float(d), "memory_mb": float(m)}
                   for e, d, m in zip(ents, np.ravel(duration_ms), np.ravel(memory_mb),
                                      strict=True)},
    })
    return frame


def _step_of(frame: pd.DataFrame, ts: np.ndarray) -> float:
    step = frame.attrs.get("step")
    if step:
        return float(step)
    if len(ts) < 2:
        return 60.0
    diffs = np.diff(ts)
    return float(diffs.min())


@register_scenario
class ServerlessScenario(Scenario):
    """Warm-instance provisioning per function under the reference model above."""

    name: ClassVar[str] = "serverless"
    cost_figure: ClassVar[str] = "wasted_memory_gb_s"
    sla_figure: ClassVar[str] = "cold_start_rate"
    defaults: ClassVar[dict[str, Any]] = {}
    units: ClassVar[dict[str, str]] = {
        "invocations": "invocations", "cold_starts": "cold starts", "cold_start_rate": "%",
        "wasted_memory_gb_s": "GB·s", "warm_memory_gb_s": "GB·s", "functions": "functions",
        "steps": "steps", "step_s": "s", "fallback_steps": "steps", "invalid_steps": "steps",
        # timeline columns (per step, over all functions; cold_starts as above)
        "concurrency": "instances", "warm": "instances",
    }

    def prepare(self, frame: pd.DataFrame) -> ServerlessData:
        """Pivot the ``invocations`` rows to (T, F) and join the per-function constants.

        Raises:
            InputError: no ``invocations`` rows, negative or non-integer counts, timestamps
                off the step grid, or a function without ``duration_ms`` / ``memory_mb``.

        """
        src = frame.attrs.get("source", "trace")
        rows = frame[frame["metric"] == "invocations"]
        if rows.empty:
            have = sorted(frame["metric"].unique()) if len(frame) else []
            raise InputError(
                "the serverless scenario needs per-function 'invocations' rows (an Azure "
                f"Functions trace); this trace has metrics {have}", where=str(src))
        ts_all = pd.unique(rows["ts"].to_numpy(dtype=np.float64))
        ts_all.sort()
        step = _step_of(frame, ts_all)
        if step <= 0:
            raise InputError(f"step must be > 0 seconds, got {step}", where=str(src))
        t0 = ts_all[0]
        idx_f = (rows["ts"].to_numpy(dtype=np.float64) - t0) / step
        idx = np.rint(idx_f).astype(np.int64)
        off = np.abs(idx_f - idx) > 1e-6
        if off.any():
            bad = rows.iloc[int(np.argmax(off))]
            raise InputError(
                f"timestamp {bad['ts']} of function {bad['entity']!r} is not on the "
                f"{step:g} s grid starting at {t0}", where=f"{src}, column ts")
        vals = rows["value"].to_numpy(dtype=np.float64)
        badv = (vals < 0) | (vals != np.floor(vals))
        if badv.any():
            bad = rows.iloc[int(np.argmax(badv))]
            raise InputError(
                f"invocation count must be a whole number >= 0, got {bad['value']} for "
                f"function {bad['entity']!r} at ts {bad['ts']}", where=f"{src}, column value")
        f_idx, ents = pd.factorize(rows["entity"], sort=True)
        ents = np.asarray([str(e) for e in ents], dtype=object)
        n_t = int(idx.max()) + 1
        inv = np.zeros((n_t, len(ents)), dtype=np.int64)  # (T, F)
        np.add.at(inv, (idx, f_idx), vals.astype(np.int64))

        static = frame.attrs.get("static") or {}
        dur = np.empty(len(ents))
        mem = np.empty(len(ents))
        for i, e in enumerate(ents):
            attrs = static.get(e, {})
            for key, out in (("duration_ms", dur), ("memory_mb", mem)):
                v = attrs.get(key)
                if v is None or not np.isfinite(float(v)) or float(v) < 0:
                    raise InputError(
                        f"function {e!r} has no valid {key!r} (got {v!r}); the serverless "
                        "model needs each function's mean duration and memory — pass the "
                        "duration and memory files with the invocation file",
                        where=str(src))
                out[i] = float(v)
        return ServerlessData(
            entities=tuple(str(e) for e in ents), ts=t0 + step * np.arange(n_t),
            invocations=inv, concurrency=required_concurrency(inv, dur, step),
            duration_ms=dur, memory_mb=mem, step_s=step,
            resolved={"step_s": step, "functions": len(ents), "steps": n_t})

    def forecast_series(self, data: ServerlessData) -> list[Any]:
        """Return the series a forecaster of this scenario is fed: each function's concurrency."""
        from models.data import Series

        return [Series(data.concurrency[:, f].astype(np.float64), data.ts, ("demand",), e,
                       data.step_s) for f, e in enumerate(data.entities)]

    def forecast_horizon(self, policy: Policy, data: ServerlessData) -> int:
        """Return the steps a forecast for ``policy`` must cover: its ``horizon`` parameter."""
        return int(getattr(policy, "params", {}).get("horizon", 1) or 1)

    def run(self, policy: Policy, data: ServerlessData, *, seed: int = 0,
            timeline: bool = False, forecaster: Any = None) -> RunResult:
        """Replay ``policy`` over ``data``; deterministic (the model has no randomness)."""
        c = data.concurrency  # (T, F)
        n_t, n_f = c.shape
        foresight = bool(getattr(policy, "reads_future", False))
        spec = contract.Spec(
            entities=data.entities, duration_ms=data.duration_ms, memory_mb=data.memory_mb,
            step_s=data.step_s,
            peak_concurrency=(c.max(axis=0) if n_t else np.zeros(n_f, np.int64))
            if foresight else None,
        )
        fc = forecaster if getattr(policy, "needs_forecast", False) else None
        # policies get read-only views: decide must not be able to edit the replay's arrays
        hist_ro, inv_ro = read_only(c), read_only(data.invocations)
        warm = np.zeros((n_t, n_f), dtype=np.int64)  # (T, F)
        warm_ro = read_only(warm)
        zeros = read_only(np.zeros(n_f, dtype=np.int64))
        memory: Any = None
        fallback_steps = invalid_steps = 0
        for t in range(n_t):
            now = float(data.ts[t])
            truth = None
            if foresight:
                truth = Forecast(samples=c[t][None, None, :], start=now, step=data.step_s,
                                 indicators=data.entities, model="truth")
            obs = contract.Observation(
                t=t, history=hist_ro[:t], invocations_last=inv_ro[t - 1] if t else zeros,
                warm_last=warm_ro[t - 1] if t else zeros, start_s=now,
                current=contract.Desired(warm_ro[t - 1]) if t else None, truth=truth)
            try:
                dec, desired, memory = step_policy(policy, fc, spec, obs, memory, now)
            except ValueError as exc:
                raise ValueError(f"policy {policy.name!r} at step {t}: {exc}") from exc
            fallback_steps += bool(dec.fallback)
            if not dec.valid:
                invalid_steps += 1
            warm[t] = desired.warm if desired is not None else 0
        return _result(data, warm, fallback_steps, invalid_steps, timeline)


def _result(data: ServerlessData, warm: np.ndarray, fallback_steps: int, invalid_steps: int,
            timeline: bool) -> RunResult:
    c = data.concurrency
    cold = np.maximum(0, c - warm)  # (T, F)
    idle = np.maximum(0, warm - c)  # (T, F)
    mem_s = data.memory_mb * data.step_s / MB_PER_GB  # GB·s per instance-step, (F,)
    wasted = idle @ mem_s  # (T,)
    warm_gbs = warm @ mem_s  # (T,)
    inv_total = int(data.invocations.sum())
    cold_total = int(cold.sum())
    totals = {
        "invocations": float(inv_total),
        "cold_starts": float(cold_total),
        "cold_start_rate": cold_total / inv_total if inv_total else 0.0,
        "wasted_memory_gb_s": float(wasted.sum()),
        "warm_memory_gb_s": float(warm_gbs.sum()),
        "functions": float(c.shape[1]),
        "steps": float(c.shape[0]),
        "step_s": float(data.step_s),
        "fallback_steps": float(fallback_steps),
        "invalid_steps": float(invalid_steps),
    }
    tl = None
    if timeline:
        tl = pd.DataFrame({
            "t_s": data.ts,
            "concurrency": c.sum(axis=1),  # demand first (the plots draw it in black)
            "warm": warm.sum(axis=1),
            "cold_starts": cold.sum(axis=1),
        })
    return RunResult(totals=totals, timeline=tl,
                     extra={"entity_steps": int(c.shape[0] * c.shape[1])})
