"""Perfect-foresight oracle for the serverless scenario: the lower bound.

Warm instances equal the required concurrency exactly, ``w_t = c_t``, so there are no cold
starts and no idle warm memory. It is not deployable: the replay hands it the truth of the
current step as a one-sample Forecast (``reads_future = True``, see
:mod:`traces.replay.serverless`); it reads nothing else.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from policies.base import Decision, Policy
from policies.registry import register
from policies.scenarios.serverless import Observation, Spec


@register
class ServerlessOracle(Policy):
    """Warm = the true concurrency of the coming step, per function."""

    name: ClassVar[str] = "oracle"
    scenario: ClassVar[str] = "serverless"
    reads_future: ClassVar[bool] = True

    def decide(self, spec: Spec, obs: Observation, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        """Return the concurrency the perfect forecast holds for this step."""
        if forecast is None:
            return Decision(action={}, valid=False,
                            why="oracle needs the true next step (reads_future forecast)")
        warm = np.asarray(forecast.samples[0, 0], dtype=np.float64)  # (F,)
        return Decision(action={"warm": warm}, why="perfect foresight: warm = c_t")
