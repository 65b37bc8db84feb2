"""The one decision path, shared by the replay and the daemon.

Replay (``traces/replay``) and daemon (``service/decisions.py``) differ only in where an
observation comes from: a simulated clock over a trace, or the store. Everything from
observation to action is here: which forecaster a policy is fed (:func:`forecaster_for`),
calling it on history known at ``now`` (:func:`forecast_or_none`), and — per scenario, in
:mod:`policies.scenarios` — validating and clipping the action into a desired setting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from common.errors import NoDataError
from models.forecast import Forecast


def forecaster_for(policy: Any, seed: int = 0) -> Callable | None:  # noqa: ANN401
    """Make the forecaster fed to ``policy`` (None when it reads no forecast).

    A policy may supply its own with a ``make_forecaster(seed)`` method; otherwise the
    scenario's online forecaster (:func:`policies.forecasters.default_forecaster`) is used;
    a scenario without one gives None and the policy falls back (and says so).
    """
    if not getattr(policy, "needs_forecast", False):
        return None
    make = getattr(policy, "make_forecaster", None)
    if callable(make):
        return make(seed)
    from policies.forecasters import default_forecaster

    try:
        return default_forecaster(policy.scenario, seed=seed)
    except ValueError:
        return None


def forecast_or_none(forecaster: Any, history: np.ndarray, now: float, step: float,  # noqa: ANN401
                     horizon: int) -> Forecast | None:
    """Call the forecaster; a typed no-data outcome becomes None (the policy falls back)."""
    try:
        return forecaster(history, now, step, horizon)
    except NoDataError:
        return None
