"""The ``power`` scenario's contract: caps for a row of servers under a power budget.

:class:`Spec` is the row (servers, budget, nameplate and idle power, priorities, actuation
delay), :class:`Observation` the telemetry known before step ``t`` (power drawn per server
after caps, the caps commanded last), :class:`Desired` a cap per server (``inf`` = none).
The replay (``traces/replay/power.py``) and the daemon build the same types and hand them to
:func:`policies.pipeline.step`; :func:`apply` is the one place an action becomes caps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.forecast import Forecast
from policies.base import Decision
from policies.scenarios import policy_horizon, stepped_history

NAME = "power"


@dataclass(frozen=True, slots=True)
class Spec:
    """One row of servers.

    Attributes:
        server_ids: N server names.
        budget_w: the row's power budget.
        p_max_w / p_idle_w: nameplate and idle power of one server.
        low_priority: ``(N,)`` bool; low-priority servers are capped first.
        step_s: seconds per telemetry step.
        delay_s: seconds from a decision to its caps taking effect.

    """

    server_ids: tuple[str, ...]
    budget_w: float
    p_max_w: float
    p_idle_w: float
    low_priority: np.ndarray
    step_s: float
    delay_s: float

    def __post_init__(self) -> None:
        n = len(self.server_ids)
        if np.shape(self.low_priority) != (n,):
            raise ValueError(f"power spec: low_priority needs shape ({n},)")
        if not (0 <= self.p_idle_w <= self.p_max_w and self.budget_w > 0):
            raise ValueError("power spec needs 0 <= p_idle_w <= p_max_w and budget_w > 0")
        if not (self.step_s > 0 and self.delay_s >= 0):
            raise ValueError("power spec needs step_s > 0 and delay_s >= 0")

    @property
    def servers(self) -> int:
        """Return N, the number of servers."""
        return len(self.server_ids)


@dataclass(frozen=True)
class Desired:
    """A cap per server in watts, ``(N,)``; ``inf`` = no cap."""

    caps: np.ndarray

    def as_dict(self, spec: Spec) -> dict[str, Any]:
        """Return the setting as stored and served: finite caps by server name."""
        return {"caps": {s: float(w) for s, w in zip(spec.server_ids, self.caps, strict=True)
                         if math.isfinite(w)}}


@dataclass(frozen=True)  # no slots: a frozen slotted init costs more per decision
class Observation:
    """Telemetry known before step ``t``.

    Attributes:
        t: steps observed (rows of ``history``).
        history: ``(t, N)`` power drawn per server, after caps (read only).
        caps_w: ``(N,)`` caps commanded last (``inf`` = none).
        start_s: time the step being decided begins.
        current: the setting last asked for (None before any).
        truth: hindsight, this step's true demand as a Forecast (replay only).
        row_w: ``(t,)`` row power (``history`` summed over servers), when the caller keeps
            it already (the replay); computed otherwise.

    """

    t: int
    history: np.ndarray
    caps_w: np.ndarray
    start_s: float
    current: Desired | None = None
    truth: Forecast | None = None
    row_w: np.ndarray | None = None


def desired_from(setting: dict[str, Any] | None, spec: Spec) -> Desired | None:
    """Read a stored setting back (None when there is none)."""
    if not setting or "caps" not in setting:
        return None
    caps = dict(setting["caps"] or {})
    return Desired(np.array([float(caps.get(s, math.inf)) for s in spec.server_ids]))


def inputs(spec: Spec, obs: Observation, memory: Any) -> tuple[dict[str, Any], dict[str, Any]]:  # noqa: ANN401
    """``(spec, state)`` as the power policies read them (module doc of the replay)."""
    low = spec.low_priority
    d = {
        "servers": spec.servers, "server_ids": spec.server_ids, "budget_w": spec.budget_w,
        "p_max_w": spec.p_max_w, "p_idle_w": spec.p_idle_w, "low_priority": low,
        "priority": np.where(low, 0.0, 1.0), "step_s": spec.step_s, "delay_s": spec.delay_s,
    }
    t = obs.t
    row = obs.row_w if obs.row_w is not None else obs.history.sum(axis=1)
    state = {
        "t": t, "row_power_w": float(row[-1]) if t else 0.0,
        "server_power_w": obs.history[-1] if t else np.zeros(spec.servers),
        "caps_w": obs.caps_w.copy(), "capped": np.isfinite(obs.caps_w),
        "history_row_w": row, "memory": memory,
    }
    return d, state


#: what the forecaster reads (per-server power (t, N)), and how far it forecasts
history = stepped_history
horizon = policy_horizon


def apply(decision: Decision, spec: Spec, current: Desired | None) -> Desired | None:
    """Validate a decision into caps; invalid keeps ``current``.

    ``caps`` is an array ``(N,)`` (``inf`` = no cap) or a mapping by server name or position
    (servers not named are uncapped).

    Raises:
        ValueError: no ``caps``, a wrong shape, an unknown server, a NaN or a negative cap.

    """
    if not decision.valid:
        return current
    n = spec.servers
    raw = decision.action.get("caps") if isinstance(decision.action, dict) else None
    if raw is None:
        raise ValueError(f"a valid power decision needs {{'caps': array or {{server: watts}}}},"
                         f" got {decision.action!r}")
    if isinstance(raw, dict):
        out = np.full(n, np.inf)
        index: dict[Any, int] = {s: i for i, s in enumerate(spec.server_ids)}
        index.update({i: i for i in range(n)})  # servers may also be named by position
        for k, v in raw.items():
            key = int(k) if isinstance(k, np.integer) else k
            if key not in index:
                raise ValueError(f"caps name an unknown server {key!r}")
            out[index[key]] = float(v)
    else:
        out = np.asarray(raw, dtype=np.float64)
        if out.shape != (n,):
            raise ValueError(f"caps of shape {out.shape}; need ({n},)")
    if np.isnan(out).any() or (out < 0).any():
        raise ValueError("a NaN or negative cap")
    return Desired(out)
