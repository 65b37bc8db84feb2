"""POLCA row power thresholds, on the power reference model (:mod:`traces.replay.power`).

Patel et al., "POLCA: Power Oversubscription in LLM Cloud Providers", 2024.

POLCA watches the row's power against its budget and reacts in escalating levels:

=======  ==========================  =====================================  ============
level    engage when row power       caps (fraction of server nameplate)    release below
=======  ==========================  =====================================  ============
1        > ``t1`` = 80 % of budget    low priority → ``cap1_low`` = 0.75      75 %
2        > ``t2`` = 89 % of budget    low → ``cap2_low`` = 0.60,              84 %
                                     high → ``cap2_high`` = 0.85
brake    ≥ ``brake`` = 100 %          every server → ``brake_cap`` = 0.50     95 %
=======  ==========================  =====================================  ============

The thresholds 80 % / 89 %, the power brake at 100 % and the 5 % uncap hysteresis
(``hysteresis`` = 0.05: release below 75 % / 84 % / 95 %) follow the paper; the cap levels
are ours (the paper caps GPU frequencies, which this model has no notion of: we express
each level as a power cap, deeper at each level, and the brake as half of nameplate).
The row power read is the telemetry of the last completed step, after caps; escalation is
immediate, de-escalation goes to the highest level whose release threshold the row is still
above (possibly several levels at once). The level is the policy's memory
(``Decision.state = {"level": 0..3}``). It reads the ``power`` contract
(:mod:`policies.scenarios.power`): ``obs.row_power_w``, ``spec.budget_w``,
``spec.low_priority`` and ``spec.p_max_w``.

``--sweep`` walks ``t1`` over 0.70, 0.75, 0.80, 0.85 (``t2`` keeps its 9-point gap).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from policies.base import Decision, Policy
from policies.registry import register
from policies.scenarios.power import Observation, Spec

LEVEL_NAMES = ("uncapped", "cap-low", "cap-all", "power-brake")


@register
class Polca(Policy):
    """Escalating row-level power caps with hysteresis (POLCA)."""

    name: ClassVar[str] = "polca"
    scenario: ClassVar[str] = "power"
    defaults: ClassVar[dict[str, Any]] = {
        "t1": 0.80,          # fraction of budget: cap low-priority servers above it
        "t2": None,          # fraction of budget: cap all above it; None = t1 + 0.09
        "brake": 1.00,       # fraction of budget: power brake at or above it
        "hysteresis": 0.05,  # release each level this far below its threshold
        "cap1_low": 0.75,    # level-1 cap of low-priority servers, fraction of nameplate
        "cap2_low": 0.60,    # level-2 cap of low-priority servers
        "cap2_high": 0.85,   # level-2 cap of high-priority servers
        "brake_cap": 0.50,   # power-brake cap of every server
    }
    sweep_param: ClassVar[str | None] = "t1"
    sweep_grid: ClassVar[tuple[Any, ...]] = (0.70, 0.75, 0.80, 0.85)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        if p["t2"] is None:
            p["t2"] = round(p["t1"] + 0.09, 10)
        if not 0 < p["t1"] <= p["t2"] <= p["brake"]:
            raise ValueError(f"polca: need 0 < t1 <= t2 <= brake, got t1={p['t1']}, "
                             f"t2={p['t2']}, brake={p['brake']}")
        if not 0 <= p["hysteresis"] < p["t1"]:
            raise ValueError(f"polca: hysteresis must be in [0, t1), got {p['hysteresis']}")
        for key in ("cap1_low", "cap2_low", "cap2_high", "brake_cap"):
            if not 0 < p[key] <= 1:
                raise ValueError(f"polca: {key} must be a fraction of nameplate in (0, 1], "
                                 f"got {p[key]}")

    def level(self, fraction: float, current: int) -> int:
        """Return the level for row power ``fraction`` of budget, coming from ``current``."""
        p = self.params
        engage = (p["t1"], p["t2"], p["brake"])
        new = 0
        for lvl, th in enumerate(engage, start=1):
            hit = fraction >= th if lvl == 3 else fraction > th
            hold = lvl <= current and fraction >= th - p["hysteresis"]
            if hit or hold:
                new = lvl
        return new

    def decide(self, spec: Spec, obs: Observation, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        """Set the caps of the level the last observed row power calls for."""
        p = self.params
        mem = memory or {"level": 0}
        frac = obs.row_power_w / float(spec.budget_w)
        lvl = self.level(frac, int(mem["level"]))
        low = np.asarray(spec.low_priority, dtype=bool)
        pmax = float(spec.p_max_w)
        caps = np.full(len(low), np.inf)
        if lvl == 1:
            caps[low] = p["cap1_low"] * pmax
        elif lvl == 2:
            caps[low] = p["cap2_low"] * pmax
            caps[~low] = p["cap2_high"] * pmax
        elif lvl == 3:
            caps[:] = p["brake_cap"] * pmax
        return Decision(
            action={"caps": caps},
            why=f"row at {frac:.1%} of budget: {LEVEL_NAMES[lvl]}",
            details={"row_fraction": frac, "level": lvl},
            state={"level": lvl},
        )
