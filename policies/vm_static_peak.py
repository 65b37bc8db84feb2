"""Static peak provisioning for the ``vm`` scenario: one constant replica count.

``replicas = ceil(quantile_q(demand over the whole trace) / capacity)``, clamped to
``[min_replicas, max_replicas]``; ``q = 1`` (the default) is the trace's peak. It reads the
whole trace (``reads_future``), as an operator sizing for a known peak would; the sweep
walks ``quantile`` to draw the family's cost-versus-SLA curve (under-provisioned statics).

Reads the ``vm`` contract (:mod:`policies.scenarios.vm`): ``obs.demand_all`` (the whole
demand series, given only to policies that declare ``reads_future``), the capacity and
bounds of ``spec``. Memory: the replica count, computed on the first call.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from policies.base import Decision, Policy
from policies.registry import register
from policies.scenarios.vm import Observation, Spec


@register
class VmStaticPeak(Policy):
    """Constant replicas sized for the trace's peak (or a demand quantile)."""

    name = "static-peak"
    scenario = "vm"
    defaults = {
        "quantile": 1.0,  # demand quantile provisioned for; 1.0 = the peak
        "sync_s": 15.0,  # how often the (constant) decision is re-issued, seconds
    }
    reads_future: ClassVar[bool] = True
    sweep_param = "quantile"
    sweep_grid = (0.5, 0.75, 0.9, 0.95, 0.99, 1.0)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not 0.0 <= float(self.params["quantile"]) <= 1.0:
            raise ValueError(f"static-peak: quantile must be in [0, 1], got {params}")

    def decide(self, spec: Spec, obs: Observation, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        """Return the constant ``{"replicas": n}``."""
        if memory is None:
            demand = obs.demand_all
            if demand is None or len(demand) == 0:
                return Decision(
                    action={"replicas": int(obs.replicas)}, valid=False,
                    why="no demand series to size the peak from", state=None,
                )
            q = float(self.params["quantile"])
            level = float(np.max(demand)) if q >= 1.0 else float(np.quantile(demand, q))
            n = math.ceil(level / float(spec.capacity) - 1e-9)
            memory = min(int(spec.max_replicas), max(int(spec.min_replicas), n))
        return Decision(
            action={"replicas": memory}, valid=True,
            why=f"static {memory} replicas for demand quantile {self.params['quantile']}",
            state=memory,
        )
