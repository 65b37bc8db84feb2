"""The ``power`` scenario's contract: caps for a row of servers under a power budget.

:class:`Spec` is the row (servers, budget, nameplate and idle power, priorities, actuation
delay), :class:`Observation` the telemetry known before step ``t`` (power drawn per server
after caps, the caps commanded last), :class:`Desired` a cap per server (``inf`` = none).
The replay (``traces/replay/power.py``) and the daemon build the same types and hand them to
:func:`policies.pipeline.step`; :func:`apply` is the one place an action becomes caps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from models.forecast import Forecast
from policies.base import Decision
from policies.scenarios import policy_horizon, read_only, stepped_history

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
        priority: ``(N,)`` float, derived: 0 for low-priority servers, 1 for the others
            (lower is capped first); computed once, read only.

    """

    server_ids: tuple[str, ...]
    budget_w: float
    p_max_w: float
    p_idle_w: float
    low_priority: np.ndarray
    step_s: float
    delay_s: float
    priority: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.server_ids)
        if np.shape(self.low_priority) != (n,):
            raise ValueError(f"power spec: low_priority needs shape ({n},)")
        if not (0 <= self.p_idle_w <= self.p_max_w and self.budget_w > 0):
            raise ValueError("power spec needs 0 <= p_idle_w <= p_max_w and budget_w > 0")
        if not (self.step_s > 0 and self.delay_s >= 0):
            raise ValueError("power spec needs step_s > 0 and delay_s >= 0")
        object.__setattr__(self, "priority",
                           read_only(np.where(self.low_priority, 0.0, 1.0)))

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
            it already (the replay); else :attr:`row` computes it on first use.

    """

    t: int
    history: np.ndarray
    caps_w: np.ndarray
    start_s: float
    current: Desired | None = None
    truth: Forecast | None = None
    row_w: np.ndarray | None = None

    @cached_property
    def row(self) -> np.ndarray:
        """Return the ``(t,)`` row power of every observed step (``row_w`` when given)."""
        return self.row_w if self.row_w is not None else self.history.sum(axis=1)

    @property
    def row_power_w(self) -> float:
        """Return the row power of the last observed step (0 before any)."""
        if not self.t:
            return 0.0
        return float(self.row_w[-1] if self.row_w is not None else self.row[-1])

    @property
    def server_power_w(self) -> np.ndarray:
        """Return the ``(N,)`` power drawn per server in the last observed step (0 before any)."""
        return self.history[-1] if self.t else np.zeros(len(self.caps_w))

    @property
    def capped(self) -> np.ndarray:
        """Return ``(N,)`` bool: True where a cap is in force."""
        return np.isfinite(self.caps_w)


def desired_from(setting: dict[str, Any] | None, spec: Spec) -> Desired | None:
    """Read a stored setting back (None when there is none)."""
    if not setting or "caps" not in setting:
        return None
    caps = dict(setting["caps"] or {})
    return Desired(np.array([float(caps.get(s, math.inf)) for s in spec.server_ids]))


#: what the forecaster reads (per-server power (t, N))
history = stepped_history


def horizon(spec: Spec, policy: Any) -> int:  # noqa: ANN401
    """Return the steps to forecast.

    The policy's ``forecast_steps(spec)`` when it has one (what its decision window needs,
    from the row's delay and step), else its ``horizon`` parameter.
    """
    fn = getattr(policy, "forecast_steps", None)
    return int(fn(spec)) if callable(fn) else policy_horizon(spec, policy)


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
