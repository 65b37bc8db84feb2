"""Static peak for the power scenario: the row without oversubscription.

The row hosts only the servers its budget is sized for at nameplate (``budget_servers``),
so it can never exceed the budget and nothing is ever capped. The scenario reads the class
attribute ``nameplate_row`` (see :mod:`traces.replay.power`); the policy itself never caps.
It is the baseline an oversubscribing policy must beat on ``servers`` while staying close
on ``performance_lost`` and ``breach_steps``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from policies.base import Decision, Policy
from policies.registry import register
from policies.scenarios.power import Observation, Spec


@register
class PowerStaticPeak(Policy):
    """Provision for nameplate: N = budget_servers, no caps."""

    name: ClassVar[str] = "static-peak"
    scenario: ClassVar[str] = "power"
    nameplate_row: ClassVar[bool] = True

    def decide(self, spec: Spec, obs: Observation, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        """Never cap."""
        return Decision(action={"caps": np.full(spec.servers, np.inf)},
                        why="row sized for nameplate: no caps needed")
