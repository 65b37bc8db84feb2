"""Fixed keep-alive: the state-of-the-practice serverless policy.

AWS Lambda keeps instances ~10 min, Azure Functions 20 min (as reported in "Serverless in
the Wild", ATC'20).

Every instance that served an invocation stays warm for ``keepalive_min`` minutes after
its last busy step, so in the serverless reference model (:mod:`traces.replay.serverless`)
``w_t = max(c_{t−1}, …, c_{t−K})`` with ``K = keepalive_min`` steps of one minute. There is
no pre-warming: a function idle for more than K minutes is cold on its next invocation.

Knob: ``keepalive_min`` (minutes, > 0). Registered as ``keepalive-10m`` and
``keepalive-20m`` (defaults 10 and 20); ``--sweep`` walks 1, 2, 5, 10, 20, 30, 60 min.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from policies.base import Decision, Policy
from policies.registry import register
from policies.scenarios.serverless import Observation, Spec, recent_max


class _KeepAlive(Policy):
    scenario: ClassVar[str] = "serverless"
    sweep_param: ClassVar[str | None] = "keepalive_min"
    sweep_grid: ClassVar[tuple[Any, ...]] = (1, 2, 5, 10, 20, 30, 60)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        k = self.params["keepalive_min"]
        if not isinstance(k, int | float) or not k > 0:
            raise ValueError(f"{self.name}: keepalive_min must be a number of minutes > 0, "
                             f"got {k!r}")

    def decide(self, spec: Spec, obs: Observation, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        """Warm = the peak concurrency of the last ``keepalive_min`` minutes, per function."""
        # a keep-alive of K minutes spans ceil(K·60/Δ) steps of the trace
        steps = math.ceil(self.params["keepalive_min"] * 60.0 / float(spec.step_s) - 1e-9)
        warm = recent_max(obs.history, steps)  # (F,)
        return Decision(action={"warm": warm}, why=f"keep-alive {self.params['keepalive_min']}"
                        " min after the last busy step")


@register
class KeepAlive10(_KeepAlive):
    """Fixed keep-alive, 10 minutes by default."""

    name: ClassVar[str] = "keepalive-10m"
    defaults: ClassVar[dict[str, Any]] = {"keepalive_min": 10}


@register
class KeepAlive20(_KeepAlive):
    """Fixed keep-alive, 20 minutes by default."""

    name: ClassVar[str] = "keepalive-20m"
    defaults: ClassVar[dict[str, Any]] = {"keepalive_min": 20}
