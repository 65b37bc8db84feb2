"""Factories of the typed inputs a policy's ``decide`` reads, one per scenario.

Each returns ``(spec, obs)``, the scenario's frozen ``Spec`` and ``Observation``, so a test
calls ``policy.decide(*vm_inputs(...), forecast, now, memory=...)``. Tests import them as
``from tests.policies.conftest import vm_inputs`` (the daemon tests do the same with theirs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from policies.scenarios import power, serverless, vm


def vm_inputs(demand: Sequence[float] | np.ndarray = (), *, ready: int = 1,
              replicas: int | None = None, capacity: float = 1.0, lo: int = 1, hi: int = 1000,
              step_s: float = 1.0, boot_s: float = 0.0, sync_s: float = 15.0,
              start_s: float = 0.0, demand_all: np.ndarray | None = None,
              cumsum: bool = True) -> tuple[vm.Spec, vm.Observation]:
    """A vm service: ``demand`` observed from ``start_s``, ``replicas`` (default ``ready``)."""
    d = np.asarray(demand, dtype=float)
    spec = vm.Spec(capacity=capacity, min_replicas=lo, max_replicas=hi, step_s=step_s,
                   boot_s=boot_s, sync_s=sync_s)
    requested = ready if replicas is None else replicas
    obs = vm.Observation(demand=d, start_s=start_s, ready=ready, replicas=requested,
                         current=vm.Desired(requested),
                         demand_cumsum=np.concatenate(([0.0], np.cumsum(d))) if cumsum else None,
                         demand_all=demand_all)
    return spec, obs


def serverless_inputs(history: Sequence | np.ndarray, *, memory_mb: Sequence[float] | None = None,
                      duration_ms: Sequence[float] | None = None, step_s: float = 60.0,
                      entities: Sequence[str] | None = None,
                      peak_concurrency: np.ndarray | None = None,
                      functions: int | None = None) -> tuple[serverless.Spec,
                                                             serverless.Observation]:
    """Functions whose required concurrency so far is ``history`` ``(t, F)``.

    ``F`` comes from ``functions``, ``memory_mb``, ``entities`` or ``history``'s columns;
    ids default to ``f0, f1, ...``, memory to 128 MB and durations to 100 ms.
    """
    h = np.asarray(history, dtype=np.int64)
    n_f = functions or (len(memory_mb) if memory_mb is not None else
                        (len(entities) if entities is not None else h.shape[1]))
    h = h.reshape(-1, n_f)
    spec = serverless.Spec(
        entities=tuple(entities) if entities is not None else tuple(f"f{i}" for i in range(n_f)),
        duration_ms=np.asarray(duration_ms if duration_ms is not None else [100.0] * n_f, float),
        memory_mb=np.asarray(memory_mb if memory_mb is not None else [128.0] * n_f, float),
        step_s=step_s, peak_concurrency=peak_concurrency)
    t = len(h)
    zeros = np.zeros(n_f, dtype=np.int64)
    obs = serverless.Observation(t=t, history=h, invocations_last=zeros, warm_last=zeros,
                                 start_s=t * step_s)
    return spec, obs


def power_inputs(server_power_w: Sequence[float] | None = None, *, row_w: float | None = None,
                 servers: int = 3, budget_w: float = 1000.0, p_max_w: float = 500.0,
                 p_idle_w: float = 100.0, low_priority: Sequence[bool] | None = None,
                 step_s: float = 1.0, delay_s: float = 0.0,
                 caps_w: Sequence[float] | None = None,
                 start_s: float = 0.0) -> tuple[power.Spec, power.Observation]:
    """A row of ``servers``; one observed step of ``server_power_w`` (or none).

    ``row_w`` instead puts the whole row power on the first server (an observed row total).
    ``low_priority`` defaults to every server but the last; ``caps_w`` to none in force.
    """
    if row_w is not None:
        server_power_w = [row_w] + [0.0] * (servers - 1)
    low = (np.arange(servers) < servers - 1) if low_priority is None else low_priority
    spec = power.Spec(server_ids=tuple(f"s{i}" for i in range(servers)), budget_w=budget_w,
                      p_max_w=p_max_w, p_idle_w=p_idle_w,
                      low_priority=np.asarray(low, dtype=bool), step_s=step_s, delay_s=delay_s)
    if server_power_w is None:
        hist = np.zeros((0, servers))
    else:
        hist = np.asarray(server_power_w, dtype=float).reshape(1, servers)
    caps = np.full(servers, np.inf) if caps_w is None else np.asarray(caps_w, dtype=float)
    obs = power.Observation(t=len(hist), history=hist, caps_w=caps, start_s=start_s)
    return spec, obs
