"""``bayes`` for the ``vm`` scenario: chance-constrained replica counts with learnt risk.

Each decision picks the fewest replicas ``n`` whose capacity covers the forecast demand at
the moment new capacity would be ready, and through the next sync period, with probability
at least ``1 - eps``:

    P( max_{h in window} D_h > n * capacity_per_replica ) <= eps

read path by path from the forecast's joint samples (the per-path maximum over the covered
steps, so a path that spikes once counts once). Replicas added now serve from
``now + boot_delay_s``; replicas removed now are gone at once and would take a boot delay
to return, so a scale-down must also cover ``[now, now + boot_delay_s]``:

    desired = max(n_ready_window, min(current, n_whole_window))

``eps`` is not fixed: a discounted Beta–Bernoulli posterior over the violations the policy
itself observes (demand above the capacity that was running) moves it
(:class:`policies.bayes_common.RiskLearner`), so a forecast that is too narrow or too wide
is corrected until the realised violation rate meets ``target_violation``. Scale-downs wait
for a stabilisation window (the largest recommendation in it wins) and every step is rate
limited, which stops flapping.

Fallback (no forecast, or a forecast without usable samples): the reactive rule
``ceil(demand * (1 + fallback_headroom) / capacity_per_replica)`` with the same
stabilisation and rate limits; the Decision says ``fallback=True`` and why. With neither a
forecast nor an observed demand the Decision is invalid and the caller keeps its setting.

Inputs (``spec`` is a mapping; unknown keys are ignored):

* ``replicas`` — replicas running (or booting) now.
* ``demand`` — demand observed at ``now`` (same unit as ``capacity_per_replica``).
* ``capacity_per_replica`` — demand one replica serves within SLA.
* ``boot_delay_s``, ``sync_period_s`` — seconds until a new replica serves; seconds to the
  next decision.
* ``min_replicas``, ``max_replicas``; optional ``replica_cost_per_s`` (default 1, so costs
  are replica-seconds) and ``observed`` — a list of ``(demand, capacity)`` pairs seen since
  the last decision, used for risk learning instead of the single ``demand`` reading when
  present.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.forecast import Forecast
from policies.base import Decision, Policy
from policies.bayes_common import (
    RiskLearner,
    chance_constrained_units,
    exceed_probability,
    rate_limit,
    stabilised_target,
    window_max,
    window_steps,
)
from policies.registry import register


def spec_get(spec: Any, key: str, default: Any = None) -> Any:
    """Read ``key`` from a mapping or an object's attribute, else ``default``."""
    if isinstance(spec, dict):
        return spec.get(key, default)
    return getattr(spec, key, default)


def observed_violations(spec: Any, capacity_per_replica: float, replicas: int) -> tuple[int, int]:
    """``(violations, trials)`` the caller reports since the last decision."""
    pairs = spec_get(spec, "observed")
    if pairs:
        v = sum(1 for d, c in pairs if d > c + 1e-9)
        return v, len(pairs)
    demand = spec_get(spec, "demand")
    if demand is None or not math.isfinite(float(demand)):
        return 0, 0
    return int(float(demand) > replicas * capacity_per_replica + 1e-9), 1


@register
class BayesVM(Policy):
    """Chance-constrained autoscaler whose risk level is learnt from observed violations."""

    name = "bayes"
    scenario = "vm"
    needs_forecast = True
    defaults = {
        "target_violation": 0.01,  # target fraction of intervals with demand above capacity
        "indicator": None,  # forecast indicator to read (None: the first)
        "learn_risk": True,  # adapt the operating risk level from observed violations
        "prior_n": 20.0,  # prior pseudo-observations of the violation-rate posterior
        "discount": 0.995,  # per-observation forgetting of that posterior
        "gain": 0.05,  # log-step of the operating risk level per observation
        "min_risk_ratio": 0.02,  # operating risk >= this * target
        "max_risk_ratio": 4.0,  # operating risk <= this * target
        "scale_down_window_s": 300.0,  # scale-down stabilisation window (seconds)
        "max_scale_up_ratio": 10.0,  # at most this factor more replicas per step
        "max_scale_up_abs": 4,  # ... but always at least this many more
        "max_scale_down_ratio": 0.5,  # at most this fraction fewer replicas per step
        "max_scale_down_abs": 1,  # ... but always at least this many fewer
        "fallback_headroom": 0.3,  # reactive rule headroom over observed demand
    }
    sweep_param = "target_violation"
    sweep_grid = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        p = self.params
        self.learner = RiskLearner(
            target=float(p["target_violation"]),
            prior_n=float(p["prior_n"]),
            discount=float(p["discount"]),
            gain=float(p["gain"]),
            min_ratio=float(p["min_risk_ratio"]),
            max_ratio=float(p["max_risk_ratio"]),
        )

    # ------------------------------------------------------------------ helpers
    def _limits(self, spec: Any) -> tuple[int, int]:
        lo = int(spec_get(spec, "min_replicas", 1) or 0)
        hi = spec_get(spec, "max_replicas")
        return lo, (int(hi) if hi is not None else 1_000_000)

    def _smooth(
        self, raw: int, current: int, now: float, hist: list, lo: int, hi: int
    ) -> tuple[int, list]:
        p = self.params
        stab, hist = stabilised_target(hist, now, raw, float(p["scale_down_window_s"]))
        target = min(hi, max(lo, stab))
        out = rate_limit(
            current,
            target,
            max_up_ratio=float(p["max_scale_up_ratio"]),
            max_up_abs=int(p["max_scale_up_abs"]),
            max_down_ratio=float(p["max_scale_down_ratio"]),
            max_down_abs=int(p["max_scale_down_abs"]),
        )
        return min(hi, max(lo, out)), hist

    def _samples(self, forecast: Forecast | None) -> np.ndarray | None:
        if forecast is None or forecast.num_samples == 0 or forecast.horizon == 0:
            return None
        ind = self.params["indicator"]
        if ind is None:
            return forecast.samples[:, :, 0]  # (S, H)
        return forecast.indicator(ind)  # (S, H)

    # ------------------------------------------------------------------ decide
    def decide(self, spec: Any, state: Any, forecast: Forecast | None, now: float) -> Decision:
        """Replica count for ``now``; see the module docstring for inputs and rules."""
        state = state or {}
        cap = float(spec_get(spec, "capacity_per_replica", 1.0))
        if not cap > 0:
            raise ValueError(f"spec.capacity_per_replica must be > 0, got {cap}")
        current = int(spec_get(spec, "replicas", 0) or 0)
        boot = float(spec_get(spec, "boot_delay_s", 0.0) or 0.0)
        sync = float(spec_get(spec, "sync_period_s", 60.0) or 0.0)
        cost_rate = float(spec_get(spec, "replica_cost_per_s", 1.0))
        lo, hi = self._limits(spec)

        # learn from what happened since the last decision (pure: a new posterior)
        post = state.get("risk")
        if self.params["learn_risk"]:
            v, n = observed_violations(spec, cap, current)
            post = self.learner.update(post, v, n)
        elif post is None:
            post = self.learner.initial()
        eps = self.learner.eps(post) if self.params["learn_risk"] else self.learner.target
        hist = list(state.get("desired", []))
        new_state = {"risk": post, "desired": hist}

        x = self._samples(forecast)
        if x is None:
            return self._fallback(spec, new_state, now, current, cap, lo, hi, eps, forecast)

        # (S,) per-path peaks: from ready time through the next sync, and from now
        w_ready = window_steps(forecast.start, forecast.step, x.shape[1], now + boot, now + boot + sync)
        w_all = window_steps(forecast.start, forecast.step, x.shape[1], now, now + boot + sync)
        peak_ready = window_max(x, w_ready)
        peak_all = window_max(x, w_all)
        n_ready, _ = chance_constrained_units(peak_ready, cap, eps, floor=lo, ceiling=hi)
        n_all, _ = chance_constrained_units(peak_all, cap, eps, floor=lo, ceiling=hi)
        raw = max(n_ready, min(current, n_all))
        out, hist = self._smooth(raw, current, now, hist, lo, hi)
        new_state["desired"] = hist
        p_viol = exceed_probability(peak_ready, out * cap)
        exp_cost = out * cost_rate * max(sync, forecast.step)
        why = (
            f"{out} replicas: P(demand > capacity) = {p_viol:.3%} over "
            f"[now+{boot:.0f}s, now+{boot + sync:.0f}s] at operating risk {eps:.3%} "
            f"(target {self.learner.target:.3%}, realised ~{RiskLearner.rate_mean(post):.3%})"
        )
        if out != raw:
            why += f"; raw {raw} held to {out} by hysteresis/rate limits"
        return Decision(
            action={"replicas": int(out)},
            valid=True,
            why=why,
            details={
                "quantile": 1.0 - eps,
                "operating_risk": eps,
                "target_violation": self.learner.target,
                "p_violation": p_viol,
                "expected_cost": exp_cost,
                "raw_replicas": int(raw),
                "replicas_ready_window": int(n_ready),
                "replicas_whole_window": int(n_all),
                "window_s": [boot, boot + sync],
                "realised_violation_mean": RiskLearner.rate_mean(post),
                "p_rate_above_target": self.learner.prob_above_target(post),
                "forecast_model": forecast.model,
            },
            fallback=False,
            state=new_state,
        )

    def _fallback(
        self,
        spec: Any,
        new_state: dict,
        now: float,
        current: int,
        cap: float,
        lo: int,
        hi: int,
        eps: float,
        forecast: Forecast | None,
    ) -> Decision:
        demand = spec_get(spec, "demand")
        reason = "no forecast" if forecast is None else "forecast has no samples"
        if demand is None or not math.isfinite(float(demand)):
            return Decision(
                action={"replicas": current},
                valid=False,
                why=f"{reason} and no observed demand: keeping {current} replicas",
                details={"reason": reason},
                fallback=True,
                state=new_state,
            )
        head = float(self.params["fallback_headroom"])
        raw = max(lo, min(hi, math.ceil(float(demand) * (1.0 + head) / cap - 1e-9)))
        out, hist = self._smooth(raw, current, now, new_state["desired"], lo, hi)
        new_state["desired"] = hist
        return Decision(
            action={"replicas": int(out)},
            valid=True,
            why=(
                f"fallback ({reason}): reactive rule ceil(demand {float(demand):.3g} x "
                f"{1 + head:.2f} / {cap:.3g}) = {raw}, set {out}"
            ),
            details={
                "reason": reason,
                "rule": "ceil(demand * (1 + fallback_headroom) / capacity_per_replica)",
                "raw_replicas": int(raw),
                "operating_risk": eps,
                "expected_cost": out
                * float(spec_get(spec, "replica_cost_per_s", 1.0))
                * float(spec_get(spec, "sync_period_s", 60.0) or 0.0),
            },
            fallback=True,
            state=new_state,
        )
