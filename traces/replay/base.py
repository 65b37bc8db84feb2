"""The scenario seam of the replay simulator.

A scenario (``vm``, ``serverless``, ``power``) turns a canonical long frame into the
arrays it simulates (:meth:`Scenario.prepare`), then runs one policy over them on a
simulated clock (:meth:`Scenario.run`) and returns the reference model's figures.
Scenarios register by name; ``traces.replay.core`` drives them for the CLI.

Forecasts in replay: when ``policy.needs_forecast`` is true the scenario calls a
*forecaster* before each decision, passing only history up to ``now`` (never the future):
``forecaster(history, now, step, horizon) -> Forecast``, where ``history`` is an array
``(T, M)`` of the M series the policy reads (for vectorised scenarios, M may be the
entities themselves: one batched Forecast whose indicators are entity ids). The
forecaster is given to :meth:`Scenario.run`; without one the policy receives ``None``
and must fall back (and say so in its Decision).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from policies.base import Policy
from policies.scenarios import read_only  # noqa: F401 - the scenarios' import point


@dataclass
class RunResult:
    """Outcome of one policy run over one trace.

    Attributes:
        totals: the scenario's figures, e.g. ``{"replica_seconds": ..., "violation_rate": ...}``.
        timeline: per-step frame for plots (demand against capacity / warm / row power),
            possibly downsampled; None when not recorded.

    """

    totals: dict[str, float]
    timeline: pd.DataFrame | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Scenario:
    """Base class of the replay scenarios."""

    name: ClassVar[str] = ""
    #: figure used as cost and as SLA miss on the cost-versus-SLA plot
    cost_figure: ClassVar[str] = ""
    sla_figure: ClassVar[str] = ""
    #: resolved defaults of the scenario's configuration (units in the names or docs)
    defaults: ClassVar[dict[str, Any]] = {}
    #: unit of each figure in ``RunResult.totals`` and each timeline column, as the CLI
    #: and the plots print it (:func:`common.units.human`; ``"%"``: a fraction)
    units: ClassVar[dict[str, str]] = {}

    def __init__(self, **config: Any) -> None:
        unknown = set(config) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"scenario {self.name!r} has no option(s) {sorted(unknown)}; "
                f"known: {sorted(self.defaults)}"
            )
        self.config = {**self.defaults, **config}

    def units_for(self, data: Any) -> dict[str, str]:  # noqa: ANN401 - the prepared data
        """Units of the figures and timeline columns for ``data`` (default :attr:`units`)."""
        return dict(self.units)

    def prepare(self, frame: pd.DataFrame) -> Any:
        """Extract the arrays this scenario simulates from a canonical frame."""
        raise NotImplementedError

    def run(
        self,
        policy: Policy,
        data: Any,
        *,
        seed: int = 0,
        timeline: bool = False,
        forecaster: Any = None,
    ) -> RunResult:
        """Simulate ``policy`` over ``data``; deterministic for a given seed."""
        raise NotImplementedError


_SCENARIOS: dict[str, type[Scenario]] = {}


def register_scenario(cls: type[Scenario]) -> type[Scenario]:
    """Class decorator adding a scenario under its name."""
    _SCENARIOS[cls.name] = cls
    return cls


def get_scenario(name: str) -> type[Scenario]:
    """Return the scenario class named ``name`` (imports the built-in ones first)."""
    import importlib

    for mod in ("vm", "serverless", "power"):
        try:
            importlib.import_module(f"traces.replay.{mod}")
        except ModuleNotFoundError as exc:  # a scenario module not written yet
            if exc.name != f"traces.replay.{mod}":
                raise
    try:
        return _SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; known: {sorted(_SCENARIOS)}") from None
