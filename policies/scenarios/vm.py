"""The ``vm`` scenario's contract: horizontal scaling of one service.

:class:`Spec` is what does not change between decisions (capacity per replica, bounds, boot
and decision period), :class:`Observation` what is known at ``now`` (completed demand
samples, the ready and requested replicas), :class:`Desired` the setting a decision asks for.
The replay (``traces/replay/vm.py``) and the daemon (``service/decisions.py``) build the same
types and hand them to :func:`policies.pipeline.step`; :func:`apply` is the one place an
action becomes a setting.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from policies.base import Decision

NAME = "vm"


@dataclass(frozen=True, slots=True)
class Spec:
    """Static description of one scaled service.

    Attributes:
        capacity: demand units one replica serves (> 0).
        min_replicas / max_replicas: bounds of the setting (0 <= min <= max).
        step_s: seconds per demand sample.
        boot_s: seconds from a replica's request to ready.
        sync_s: seconds between decisions.

    """

    capacity: float
    min_replicas: int
    max_replicas: int
    step_s: float
    boot_s: float
    sync_s: float

    def __post_init__(self) -> None:
        if not (self.capacity > 0 and math.isfinite(self.capacity)):
            raise ValueError(f"vm capacity must be finite and > 0, got {self.capacity}")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"vm bounds need 0 <= min_replicas <= max_replicas, got "
                f"{self.min_replicas}..{self.max_replicas}"
            )
        if not (self.step_s > 0 and self.sync_s > 0 and self.boot_s >= 0):
            raise ValueError("vm step_s and sync_s must be > 0 and boot_s >= 0")


@dataclass(frozen=True)
class Desired:
    """Replicas to run."""

    replicas: int

    def as_dict(self) -> dict[str, Any]:
        """Return the setting as stored and served (``{"replicas": n}``)."""
        return {"replicas": self.replicas}


@dataclass(frozen=True)  # no slots: a frozen slotted init costs more per decision
class Observation:
    """What is known at a decision time.

    Attributes:
        demand: completed demand samples, oldest first (read only), ``(T,)``.
        start_s: time ``demand[0]`` began (unix or trace seconds).
        ready: replicas serving now.
        replicas: replicas requested now (ready + booting).
        current: the setting last asked for (None before any: an invalid decision then
            recommends nothing rather than the minimum, which could scale a running
            deployment down).
        demand_cumsum: ``(T+1,)`` running sums of ``demand`` (0 first), or None.
        demand_all: hindsight, the whole series, for ``reads_future`` policies (replay only).

    """

    demand: np.ndarray
    start_s: float
    ready: int
    replicas: int
    current: Desired | None = None
    demand_cumsum: np.ndarray | None = None
    demand_all: np.ndarray | None = None


def desired_from(setting: dict[str, Any] | None) -> Desired | None:
    """Read a stored setting back (None when there is none)."""
    if not setting or "replicas" not in setting:
        return None
    return Desired(int(setting["replicas"]))


def inputs(spec: Spec, obs: Observation, memory: Any) -> tuple[dict[str, Any], Any]:  # noqa: ANN401
    """``(spec, state)`` as the vm policies read them (see ``policies/bayes_vm.py``)."""
    cs = obs.demand_cumsum
    if cs is None:
        cs = np.concatenate(([0.0], np.cumsum(obs.demand)))
    d = {
        "capacity": spec.capacity, "ready": obs.ready, "replicas": obs.replicas,
        "min_replicas": spec.min_replicas, "max_replicas": spec.max_replicas,
        "step_s": spec.step_s, "demand": obs.demand, "demand_cumsum": cs,
        "boot_s": spec.boot_s, "sync_s": spec.sync_s, "start_s": obs.start_s,
    }
    if obs.demand_all is not None:
        d["demand_all"] = obs.demand_all
    return d, memory


def history(obs: Observation) -> np.ndarray | None:
    """Return what the forecaster reads: ``(T, 1)`` demand, None before the first sample."""
    return obs.demand.reshape(-1, 1) if len(obs.demand) else None


def horizon(spec: Spec, policy: Any) -> int:  # noqa: ANN401
    """Return the steps to forecast: through the boot time and the next decision."""
    return max(1, math.ceil((spec.boot_s + spec.sync_s) / spec.step_s))


def apply(decision: Decision, spec: Spec, current: Desired | None) -> Desired | None:
    """Validate and clip a decision into the replicas to run.

    A valid decision's ``replicas`` is clipped to the bounds. An invalid one keeps the
    current setting, and with none yet recommends nothing (None): never a scale-down.

    Raises:
        ValueError: a valid decision without a whole, finite ``replicas`` count.

    """
    if not decision.valid:
        return current
    raw = decision.action.get("replicas") if isinstance(decision.action, dict) else None
    try:
        want = float(raw)
    except (TypeError, ValueError):
        want = math.nan
    if not math.isfinite(want):
        raise ValueError(
            f"a valid vm decision needs action {{'replicas': n}} with a finite n, "
            f"got {decision.action!r}"
        )
    want = int(want)
    lo, hi = spec.min_replicas, spec.max_replicas
    return Desired(hi if want > hi else (lo if want < lo else want))
