"""Static peak provisioning for the serverless scenario.

Each function keeps its peak concurrency of the whole trace warm at every step, from the
first step on: no cold starts, the most idle memory. The peak is hindsight (the replay
sets ``spec.peak_concurrency`` for ``reads_future`` policies): it stands for a
capacity plan sized from a known peak, the classic over-provisioning baseline.
"""

from __future__ import annotations

from typing import Any, ClassVar

from policies.base import Decision, Policy
from policies.registry import register
from policies.scenarios.serverless import Observation, Spec


@register
class ServerlessStaticPeak(Policy):
    """Warm = each function's peak concurrency, all the time."""

    name: ClassVar[str] = "static-peak"
    scenario: ClassVar[str] = "serverless"
    reads_future: ClassVar[bool] = True

    def decide(self, spec: Spec, obs: Observation, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        """Return the trace's peak concurrency for every function."""
        peak = spec.peak_concurrency
        if peak is None:
            return Decision(action={}, valid=False,
                            why="static-peak needs spec.peak_concurrency (the trace peak)")
        return Decision(action={"warm": peak}, why="static provisioning at the trace peak")
