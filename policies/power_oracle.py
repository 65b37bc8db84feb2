"""Perfect-foresight capping for the power scenario: the lower bound on lost performance.

It knows each step's demand in advance (``reads_future``: the replay passes the true
demand as a one-sample Forecast and lets its caps take effect on time) and caps exactly
when and as much as needed: when the row's demand exceeds the budget by ``E`` watts it
removes exactly ``E``, water-filling from the top of the low-priority servers first (one
common cap level, never below idle power), and only when they cannot absorb ``E`` does it
also water-fill the high-priority servers. The row never breaches (unless even every server
at idle exceeds the budget) and the clipped energy is the minimum possible:
``Σ max(0, row demand − budget) · Δ``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from policies.base import Decision, Policy
from policies.registry import register
from policies.scenarios.power import Observation, Spec


def waterfill(demand: np.ndarray, excess: float, floor: float) -> tuple[np.ndarray, float]:
    """Find the common cap level removing ``excess`` watts from ``demand``, not below ``floor``.

    Args:
        demand: (K,) demanded power of the servers that may be capped.
        excess: watts to remove (> 0).
        floor: lowest allowed cap (idle power).

    Returns:
        ``(caps (K,), removed)``: ``inf`` for servers under the level, the level otherwise;
        ``removed`` <= ``excess`` (less only when every server hits ``floor``).

    """
    caps = np.full(len(demand), np.inf)
    room = np.maximum(demand - floor, 0.0)
    if room.sum() <= excess:
        caps[demand > floor] = floor
        return caps, float(room.sum())
    d = np.sort(demand)[::-1]  # descending
    cum = np.cumsum(d)
    # with the top k servers capped at level L: sum(top k) - k*L = excess, L in [d_k+1, d_k]
    for k in range(1, len(d) + 1):
        level = (cum[k - 1] - excess) / k
        nxt = d[k] if k < len(d) else -np.inf
        if level >= nxt:
            level = max(level, floor)
            caps[demand > level] = level
            return caps, float(excess)
    raise AssertionError("unreachable: room > excess guarantees a level")  # pragma: no cover


@register
class PowerOracle(Policy):
    """Caps exactly the excess over budget, low priority first, known in advance."""

    name: ClassVar[str] = "oracle"
    scenario: ClassVar[str] = "power"
    reads_future: ClassVar[bool] = True

    def decide(self, spec: Spec, obs: Observation, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        """Water-fill the known excess of this step."""
        n = spec.servers
        if forecast is None:
            return Decision(action={}, valid=False, why="oracle needs the true demand")
        demand = np.asarray(forecast.samples[0, 0], dtype=np.float64)  # (N,)
        caps = np.full(n, np.inf)
        excess = float(demand.sum() - spec.budget_w)
        if excess <= 0:
            return Decision(action={"caps": caps}, why="demand within budget")
        low = np.asarray(spec.low_priority, dtype=bool)
        floor = float(spec.p_idle_w)
        c_low, removed = waterfill(demand[low], excess, floor)
        caps[low] = c_low
        if removed < excess - 1e-9:
            c_high, _ = waterfill(demand[~low], excess - removed, floor)
            caps[~low] = c_high
        return Decision(action={"caps": caps}, why=f"remove the known excess {excess:.0f} W",
                        details={"excess_w": excess})
