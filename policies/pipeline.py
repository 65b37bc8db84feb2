"""The one decision path, shared by the replay and the daemon.

Replay (``traces/replay``) and daemon (``service/decisions.py``) differ only in where an
observation comes from: a simulated clock over a trace, or the store. Everything from
observation to action is here: which forecaster a policy is fed (:func:`forecaster_for`),
calling it on history known at ``now`` (:func:`forecast_or_none`), calling the policy's
``decide(spec, obs, forecast, now, memory)`` with the scenario's typed ``Spec`` and
``Observation`` (:mod:`policies.base`), and — per scenario, in :mod:`policies.scenarios` —
validating and clipping the action into a desired setting.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from common.errors import NoDataError
from models.forecast import Forecast
from policies.base import Decision
from policies.scenarios import power, serverless, vm

#: The online model each scenario's forecast-reading policies are fed by default (a
#: registered model of :mod:`models`, by name, and its parameters): vm demand grows
#: multiplicatively with a daily season; server power moves within seconds (no daily season,
#: an hour of recent behaviour, the analog's own future with the gap to now fading);
#: serverless functions' concurrency is a sparse count. Power servers whose step changes
#: correlate (>= 0.5: the GPUs of one synchronous job) share an analog per path; the others
#: are drawn independently, which covers the upper tail of a row of independent pods. No
#: max_growth cap for power: its paths are past levels plus a fading gap (no compounding
#: growth), and a pod idle through the window may still burst to nameplate.
DEFAULT_FORECASTERS: dict[str, tuple[str, dict[str, Any]]] = {
    "vm": ("growth-bootstrap", {"space": "log"}),
    "serverless": ("intermittent-count", {}),
    "power": ("growth-bootstrap", {"space": "linear", "season_s": 0.0, "window_s": 3600.0,
                                   "neighbours": 0.1, "offset_decay": 0.9, "group_corr": 0.5,
                                   "max_growth": 0.0}),
}


def default_forecaster(scenario: str, seed: int = 0) -> Callable:
    """Make the scenario's default online forecaster (:data:`DEFAULT_FORECASTERS`).

    Args:
        scenario: ``vm``, ``serverless`` or ``power``.
        seed: seed of the model's sampling.

    Returns:
        A :class:`policies.forecasters.PredictorForecaster` around the online model, named
        after it.

    Raises:
        ValueError: a scenario without a default forecaster.

    """
    from models.online import online_predictor
    from policies.forecasters import PredictorForecaster

    try:
        name, params = DEFAULT_FORECASTERS[scenario]
    except KeyError:
        raise ValueError(f"no default forecaster for scenario {scenario!r}") from None
    return PredictorForecaster(online_predictor(name, seed=seed, **params), seed, name)


def forecaster_for(policy: Any, seed: int = 0, chosen: Callable | None = None  # noqa: ANN401
                   ) -> Callable | None:
    """Make the forecaster fed to ``policy`` (None when it reads no forecast).

    ``chosen`` is a forecaster the caller was asked for by name (the replay's
    ``--forecaster``, a daemon target's ``forecaster: stored`` or its backtested choice): a
    policy that reads forecasts gets it. Otherwise a policy may supply its own with a
    ``make_forecaster(seed)`` method, else the scenario's online model is used, by name through
    the models registry (:func:`default_forecaster`); a scenario without one gives None and the
    policy falls back (and says so).
    """
    if not getattr(policy, "needs_forecast", False):
        return None
    if chosen is not None:
        return chosen
    make = getattr(policy, "make_forecaster", None)
    if callable(make):
        return make(seed)
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


_CONTRACTS = {"vm": vm, "serverless": serverless, "power": power}


def contract(scenario: str) -> Any:  # noqa: ANN401
    """Return the contract module of ``scenario`` (:mod:`policies.scenarios.vm`, ...)."""
    try:
        return _CONTRACTS[scenario]
    except KeyError:
        raise ValueError(f"no scenario {scenario!r}; known: {', '.join(_CONTRACTS)}") from None


def step(policy: Any, forecaster: Callable | None, spec: Any, obs: Any, memory: Any,  # noqa: ANN401
         now: float) -> tuple[Decision, Any, Any]:
    """One decision, the same on both sides: ``(Decision, desired, memory)``.

    Args:
        policy: a registered policy instance.
        forecaster: what :func:`forecaster_for` made for it (None: the policy gets no
            forecast and falls back). Stateful forecasters keep their state themselves; the
            daemon restores and saves it around this call (:func:`service.decisions.decide_target`).
        spec: the scenario's ``Spec``.
        obs: the scenario's ``Observation`` at ``now``.
        memory: the policy's previous ``Decision.state`` (None at first).
        now: decision time (unix or trace seconds).

    Returns:
        The decision, the desired setting (the scenario's ``Desired``, or None when an invalid
        decision comes before any setting: recommend nothing) and the policy's new memory.

    Raises:
        ValueError: a valid decision whose action the scenario cannot apply.

    """
    c = _CONTRACTS[policy.scenario]
    forecast = None
    if getattr(policy, "reads_future", False) and getattr(obs, "truth", None) is not None:
        forecast = obs.truth
    elif policy.needs_forecast and forecaster is not None:
        hist = c.history(obs)
        if hist is not None:
            forecast = forecast_or_none(forecaster, hist, now, spec.step_s, c.horizon(spec, policy))
    dec = policy.decide(spec, obs, forecast, now, memory)
    return dec, c.apply(dec, spec, obs.current), dec.state
