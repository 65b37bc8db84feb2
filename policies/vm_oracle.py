"""Perfect-foresight oracle for the ``vm`` scenario: the lower bound of reactive scaling.

It reads the future (``reads_future``). A replica requested at ``now`` is ready at
``now + boot_s`` and the next decision comes ``sync_s`` later, so at each decision the
oracle asks for ``ceil(max demand over [now, now + boot_s + sync_s) / capacity)``
replicas: enough for everything the replicas it requests now could serve before its
next chance to act, and it never drops a replica that a demand within that window
still needs (scale-down is immediate in the vm model). Violations remain only where the
``max_replicas`` bound binds, or in the first ``boot_s`` seconds, before any requested
replica can be ready.

Reads the ``vm`` contract (:mod:`policies.scenarios.vm`): ``obs.demand_all`` (the whole
series, hindsight), ``obs.start_s`` (time of sample 0), ``obs.replicas``, and from ``spec``
the capacity, bounds, ``step_s``, ``boot_s`` and ``sync_s``. No memory.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from policies.base import Decision, Policy
from policies.registry import register
from policies.scenarios.vm import Observation, Spec


@register
class VmOracle(Policy):
    """Replicas for the largest demand the capacity requested now would meet."""

    name = "oracle"
    scenario = "vm"
    defaults = {"sync_s": 15.0}  # decision period, seconds
    reads_future: ClassVar[bool] = True

    def decide(self, spec: Spec, obs: Observation, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        """Return ``{"replicas": n}`` covering ``[now, now + boot + sync)``."""
        demand = obs.demand_all
        if demand is None or len(demand) == 0:
            return Decision(
                action={"replicas": int(obs.replicas)}, valid=False,
                why="no demand series to look ahead in",
            )
        step = float(spec.step_s)
        rel = float(now) - float(obs.start_s)
        horizon = float(spec.boot_s) + float(spec.sync_s)
        # Samples overlapping [rel, rel + horizon); sample j covers [j*step, (j+1)*step).
        i0 = max(0, int(math.floor(rel / step + 1e-9)))
        i1 = min(len(demand), max(i0 + 1, int(math.ceil((rel + horizon) / step - 1e-9))))
        if i0 >= len(demand):
            return Decision(
                action={"replicas": int(obs.replicas)}, valid=False,
                why="past the end of the trace",
            )
        peak = float(demand[i0:i1].max())
        n = math.ceil(peak / float(spec.capacity) - 1e-9)
        n = min(int(spec.max_replicas), max(int(spec.min_replicas), n))
        return Decision(
            action={"replicas": n}, valid=True,
            why=f"peak {peak:.4g} over the next {horizon:g} s",
            details={"peak": peak, "window": [i0, i1]},
        )
