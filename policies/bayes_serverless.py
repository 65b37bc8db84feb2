"""``bayes`` for the ``serverless`` scenario: newsvendor warm pools per function and step.

In the reference model (:mod:`traces.replay.serverless`) a function with ``w`` warm
instances and required concurrency ``C`` in a step pays ``max(0, C - w)`` cold starts and
``max(0, w - C) * m * Δ`` of idle warm memory (``m`` its memory, ``Δ`` the step). With a
stated price ratio — one cold start costs as much as ``cold_start_gb_s`` GB·s of idle
memory — the expected cost

    cold_start_gb_s * E[(C - w)+] + (m * Δ / 1024) * E[(w - C)+]

is minimised by the critical fractile (the newsvendor solution): the least ``w`` with

    P(C <= w) >= tau_f,   tau_f = cold_start_gb_s / (cold_start_gb_s + m_f * Δ / 1024)

read from the forecast's samples of ``C`` (the maximum over the steps the decision
covers), for all functions at once. A large function (costly to keep warm) gets a lower
fractile than a small one at the same price ratio.

Sparse functions are what the forecast must get right: most of their steps are empty, so
``w = 0`` unless ``P(C >= 1) > 1 - tau_f``. The replay and the daemon feed this policy the
``intermittent-count`` model (:mod:`models.intermittent_count`), whose ``P(C >= 1)`` is the
Bayesian hazard of the next invocation given the time since the last one (a per-function
idle-time histogram shrunk towards the pooled one), calibrated by the realised frequency of
what it forecast before: a timer that fires every 15 minutes is warmed for the minute it
fires, not kept warm for ten, and a function with few idle runs is not called impossible at
ages none of them ended at (``docs/serverless.md``).

The rule is per step on purpose: in the reference model an instance can be warmed in any
step for nothing but its idle memory (pre-warming is free, switching costs nothing), so the
expected cost separates by step and this newsvendor, read on calibrated probabilities, is
the optimal policy; a keep-warm *window* rule is the same rule summed over the window.

Fallback (no forecast: the first step, or a failed forecaster): the fixed keep-alive rule
``w = max(C over the last fallback_keepalive_steps steps)`` from the history the scenario
passes, with ``fallback=True``; with no history either, nothing is warmed (and the
Decision says so).

Reads the ``serverless`` contract (:mod:`policies.scenarios.serverless`): ``spec.entities``
(F ids), ``spec.memory_mb`` (F,), ``spec.step_s``; ``obs.history`` (t, F) of past required
concurrency. The policy keeps no memory of its own (``Decision.state`` is None).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.forecast import Forecast
from policies.base import Decision, Policy
from policies.bayes_common import newsvendor_counts
from policies.registry import register
from policies.scenarios.serverless import Observation, Spec

MB_PER_GB = 1024.0


def critical_fractile(cold_start_gb_s: float, memory_mb: np.ndarray, step_s: float) -> np.ndarray:
    """``tau_f = c / (c + m_f * step / 1024)``: the newsvendor's service level per function.

    Args:
        cold_start_gb_s: cost of one cold start in GB·s of idle memory (>= 0).
        memory_mb: ``(F,)`` memory of one instance (MB).
        step_s: seconds one warm instance is paid for per decision.

    Returns:
        ``(F,)`` fractiles in [0, 1].

    """
    idle = np.asarray(memory_mb, dtype=np.float64) * step_s / MB_PER_GB  # GB·s per step
    return cold_start_gb_s / (cold_start_gb_s + np.maximum(idle, 1e-12))


def _columns(spec: Spec, forecast: Forecast, n: int) -> np.ndarray:
    """``(S, H, F)`` samples in the order of ``spec.entities``."""
    ents = spec.entities
    pos = {name: j for j, name in enumerate(forecast.indicators)}
    if all(str(e) in pos for e in ents):
        return forecast.samples[:, :, [pos[str(e)] for e in ents]]
    if forecast.samples.shape[2] != n:
        raise ValueError(f"forecast has {forecast.samples.shape[2]} indicators for {n} functions")
    return forecast.samples


@register
class BayesServerless(Policy):
    """Critical-fractile warm instances per function from the predictive concurrency."""

    name = "bayes"
    scenario = "serverless"
    needs_forecast = True
    defaults = {
        "cold_start_gb_s": 400.0,  # price ratio: one cold start costs this many GB·s idle
        "horizon": 1,  # steps the forecast covers (the scenario asks for this many)
        "fallback_keepalive_steps": 10,  # fallback: keep-alive window in steps
    }
    sweep_param = "cold_start_gb_s"
    # 3000 fills the gap where the peers' dearest settings sit (2.7-3.8 M GB·s on the
    # 670-function day, docs/serverless.md)
    sweep_grid = (25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0, 600.0, 800.0, 1000.0, 2000.0,
                  3000.0, 5000.0, 10000.0, 20000.0)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if float(self.params["cold_start_gb_s"]) < 0:
            raise ValueError(
                f"bayes: cold_start_gb_s must be >= 0 GB·s, got {self.params['cold_start_gb_s']}"
            )

    def decide(self, spec: Spec, obs: Observation, forecast: Forecast | None, now: float,
               memory: Any = None) -> Decision:
        """Warm instances ``{"warm": (F,) int}`` for the step starting at ``now``."""
        mem = np.asarray(spec.memory_mb, dtype=np.float64).ravel()  # (F,)
        n = mem.size
        step = float(spec.step_s)
        kappa = float(self.params["cold_start_gb_s"])
        if forecast is None or forecast.num_samples == 0 or forecast.horizon == 0:
            return self._fallback(obs, n, "no forecast")
        x = _columns(spec, forecast, n)  # (S, H, F)
        h = max(1, min(int(self.params["horizon"]), x.shape[1]))
        demand = np.ceil(x[:, :h, :].max(axis=1) - 1e-9)  # (S, F) concurrency over the window
        tau = critical_fractile(kappa, mem, step)  # (F,)
        warm = newsvendor_counts(demand, tau)  # (F,)
        short = np.maximum(demand - warm[None, :], 0.0).mean(axis=0)  # (F,) E[cold starts]
        idle = np.maximum(warm[None, :] - demand, 0.0).mean(axis=0)  # (F,) E[idle instances]
        idle_gbs = float((idle * mem).sum() * step / MB_PER_GB)
        p_any = (demand > 0).mean(axis=0)
        n_warm_fn = int(np.count_nonzero(warm))
        why = (
            f"newsvendor at price ratio {kappa:g} GB·s per cold start: {int(warm.sum())} warm "
            f"instances over {n_warm_fn}/{n} functions; expected {short.sum():.1f} cold starts "
            f"and {idle_gbs:.0f} GB·s idle this step"
        )
        return Decision(
            action={"warm": warm},
            valid=True,
            why=why,
            details={
                "cold_start_gb_s": kappa,
                "fractile_min": float(tau.min()),
                "fractile_max": float(tau.max()),
                "expected_cold_starts": float(short.sum()),
                "expected_idle_gb_s": idle_gbs,
                "expected_cost_gb_s": float(kappa * short.sum() + idle_gbs),
                "functions_warm": n_warm_fn,
                "sparse_warmed": int(np.count_nonzero((warm > 0) & (p_any < 0.5))),
                "forecast_model": forecast.model,
            },
            fallback=False,
            state=None,
        )

    def _fallback(self, obs: Observation, n: int, reason: str) -> Decision:
        hist = obs.history
        k = int(self.params["fallback_keepalive_steps"])
        if len(hist) == 0:
            return Decision(
                action={"warm": np.zeros(n, dtype=np.int64)},
                valid=True,
                why=f"fallback ({reason}) and no history yet: nothing warm",
                details={"reason": reason, "rule": f"keep-alive {k} steps"},
                fallback=True,
                state=None,
            )
        h = np.asarray(hist)
        warm = np.asarray(h[-k:].max(axis=0), dtype=np.int64)  # (F,)
        return Decision(
            action={"warm": warm},
            valid=True,
            why=(
                f"fallback ({reason}): keep-alive rule, warm = max concurrency of the last "
                f"{k} steps ({int(warm.sum())} instances)"
            ),
            details={"reason": reason, "rule": f"keep-alive {k} steps"},
            fallback=True,
            state=None,
        )
