"""The decision contract shared by trace replay and the daemon.

``decide(spec, obs, forecast, now, memory=None) -> Decision`` is pure: no I/O, time passed
in, inputs never edited. ``spec`` and ``obs`` are the frozen, typed ``Spec`` and
``Observation`` of the policy's scenario (:mod:`policies.scenarios.vm`, ``.serverless``,
``.power``): a policy reads their attributes, never a dict, and derived values (running
sums, row power, priorities) come from their properties. ``memory`` is what the policy
returned last time as ``Decision.state`` (None at first), plain data that
:mod:`policies.memory` stores as JSON. The one caller is :func:`policies.pipeline.step`,
for the replay and the daemon alike. A policy is one class in its own file, registered by
name in :mod:`policies.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from models.forecast import Forecast


@dataclass
class Decision:
    """What a policy decided.

    Attributes:
        action: the desired setting, e.g. ``{"replicas": 4}``, ``{"warm": 2}``,
            ``{"caps": {"server-3": 450.0}}``.
        valid: False when the policy could not decide (no data); callers keep the
            current setting and never scale down on an invalid decision.
        why: a short human-readable explanation.
        details: numbers behind the decision (quantile used, P(violation), expected cost...).
        fallback: True when a fallback rule was used instead of the policy's main logic.
        state: the policy's memory, passed back as ``memory`` into the next call (policies
            keep no hidden state; the caller, replay or daemon, owns and stores it). Plain
            data only (see :mod:`policies.memory`).

    """

    action: dict[str, Any]
    valid: bool = True
    why: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    fallback: bool = False
    state: Any = None


class Policy:
    """Base class of every policy.

    Subclasses set ``name`` and ``scenario`` and implement :meth:`decide`. ``params``
    holds the documented knobs with their defaults; ``sweep_grid`` the grid that
    ``--sweep`` walks for the main knob.
    """

    name: ClassVar[str] = ""
    scenario: ClassVar[str] = ""  # "vm", "serverless" or "power"
    defaults: ClassVar[dict[str, Any]] = {}
    #: True when the policy reads a Forecast; the replay then calls a forecaster before
    #: each decision (see traces/replay/base.py) and the daemon passes its latest forecast.
    needs_forecast: ClassVar[bool] = False
    sweep_param: ClassVar[str | None] = None
    sweep_grid: ClassVar[tuple[Any, ...]] = ()

    def __init__(self, **params: Any) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"policy {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"known: {sorted(self.defaults)}"
            )
        self.params = {**self.defaults, **params}

    def decide(self, spec: Any, obs: Any, forecast: Forecast | None, now: float,
               memory: Any = None) -> Decision:
        """Return the decision for ``now`` (unix or simulated seconds).

        Args:
            spec: the scenario's ``Spec`` (static: capacity and bounds, functions, the row).
            obs: the scenario's ``Observation`` known at ``now`` (history, the setting in
                force; hindsight fields only for ``reads_future`` policies in the replay).
            forecast: the forecast fed to a ``needs_forecast`` policy (None when there is
                none: the policy falls back and says so), or the truth for ``reads_future``
                policies; None for the others.
            now: decision time (unix or trace seconds).
            memory: this policy's previous ``Decision.state`` (None at the first call).

        """
        raise NotImplementedError
