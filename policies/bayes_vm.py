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

The window and the scale-down limit guard against a forecast that is wrong; they are not
needed where the forecast leaves no doubt. With ``sure_scale_down`` (the default), a
scale-down goes at once, past both, to the count that covers *every* sample path's peak over
the whole window ``[now, now + boot_delay_s + sync_s]``:

    out = max(raw, n_every_path)   when n_every_path < stabilised and out < current

The forecast is trusted so only while it has earned it: with ``learn_risk``, only while the
posterior probability that the realised violation rate exceeds its target is at most
``sure_max_p_above`` (0.1: about a hundred clean intervals past the prior). A sharp forecast
(perfect foresight) then follows demand down as fast as it may; on a bursty trace a forecast
whose every path misses the next burst (the online one on Bitbrains) keeps the hysteresis
that saves the next rise. Measured (docs/vm-gap.md): fed the realised future, the window and
the limit cost 2 to 11 % over the oracle's replica-seconds; with this rule none.

Fallback (no forecast, or a forecast without usable samples): the reactive rule
``ceil(demand * (1 + fallback_headroom) / capacity_per_replica)`` with the same
stabilisation and rate limits; the Decision says ``fallback=True`` and why. With neither a
forecast nor an observed demand the Decision is invalid and the caller keeps its setting.

Reads the ``vm`` contract (:mod:`policies.scenarios.vm`): from ``spec`` the
``capacity`` (demand units one replica serves), ``min_replicas`` / ``max_replicas``,
``step_s`` (seconds per demand sample), ``boot_s`` (seconds from request to ready; the
``boot_delay_s`` parameter overrides it) and ``sync_s`` (seconds between decisions); from
``obs`` the ``demand`` observed so far (oldest first), its ``start_s``, and the ``ready``
and ``replicas`` (requested, ready + booting) counts. Costs are replica-seconds. Violations
are learnt from the demand samples that arrived since the last decision, each compared
with ``ready * capacity``.

Memory (returned in ``Decision.state``, passed back unchanged): a dict with the risk
posterior (``risk``), the recent raw recommendations (``desired``), the number of
demand samples already counted (``n_seen``) and the time their last one ended
(``seen_until_s``): new samples are counted by time, so a history window that slides
(the daemon's) counts each sample once.
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
    priced_units,
    rate_limit,
    stabilised_target,
    window_max,
    window_steps,
)
from policies.registry import register
from policies.scenarios.vm import Observation, Spec


def observed_violations(spec: Spec, obs: Observation, memory: dict,
                        capacity: float) -> tuple[int, int]:
    """``(violations, trials)`` seen since the last decision.

    The demand samples that arrived since the last decision, each compared with the
    capacity of the replicas ready now.
    """
    demand = obs.demand
    if len(demand) == 0:
        return 0, 0
    until = memory.get("seen_until_s")
    if until is not None:
        # by time: the samples that begin at or after the end of those counted last time,
        # so a history window that slides (the daemon keeps a fixed number of buckets)
        # still counts each new sample once
        first_new = max(0, math.ceil((float(until) - float(obs.start_s)) / float(spec.step_s)
                                     - 1e-9))
        k = max(0, len(demand) - first_new)
    else:
        seen = memory.get("n_seen")
        # demand is the history so far: the samples beyond the count seen last time are new
        # (a shorter array means a window that slid; then only the newest sample is counted)
        k = 1 if seen is None or len(demand) < seen else len(demand) - int(seen)
    if k == 0:
        return 0, 0
    limit = float(obs.ready or 0) * capacity
    recent = np.asarray(demand[len(demand) - k :], dtype=np.float64)
    return int(np.count_nonzero(recent > limit + 1e-9)), k


def forecast_origin(spec: Spec, obs: Observation, forecast: Forecast) -> float:
    """Where forecast step 0 begins on the demand grid.

    A forecaster fed the completed samples forecasts the first sample not yet observed,
    which began at ``obs.start_s + len(obs.demand) * spec.step_s`` (at or before ``now``).
    When the forecast uses the demand's step, this is exact; otherwise the forecast's own
    ``start`` is used.
    """
    if abs(float(forecast.step) - float(spec.step_s)) > 1e-9:
        return float(forecast.start)
    return float(obs.start_s) + len(obs.demand) * float(spec.step_s)


@register
class BayesVM(Policy):
    """Chance-constrained autoscaler whose risk level is learnt from observed violations."""

    name = "bayes"
    scenario = "vm"
    needs_forecast = True
    defaults = {
        "target_violation": 0.01,  # target fraction of intervals with demand above capacity
        "sync_s": 15.0,  # seconds between decisions (the replay calls decide this often)
        "boot_delay_s": None,  # seconds until a new replica serves (None: spec's boot_s)
        "indicator": None,  # forecast indicator to read (None: the first)
        "objective": "priced",  # "priced": min cost + price*P(violation); "quantile": fixed eps
        "max_risk": 0.25,  # hard per-decision chance constraint for "priced" (probability)
        "learn_risk": True,  # adapt the operating risk level from observed violations
        "prior_n": 20.0,  # prior pseudo-observations of the violation-rate posterior
        "discount": 0.995,  # per-observation forgetting of that posterior
        "gain": 0.01,  # log-step of the operating risk level per observation
        "min_risk_ratio": 0.05,  # operating risk >= this * target
        "max_risk_ratio": 10.0,  # operating risk <= this * target
        "scale_down_window_s": 300.0,  # scale-down stabilisation window (seconds)
        "max_scale_up_ratio": 10.0,  # at most this factor more replicas per step
        "max_scale_up_abs": 4,  # ... but always at least this many more
        "max_scale_down_ratio": 0.5,  # at most this fraction fewer replicas per step
        "max_scale_down_abs": 1,  # ... but always at least this many fewer
        "fallback_headroom": 0.3,  # reactive rule headroom over observed demand
        "sure_scale_down": True,  # scale down at once to what covers every forecast path
        "sure_max_p_above": 0.1,  # ... only while P(realised violation rate > target) <= this
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
    def _smooth(
        self, raw: int, current: int, now: float, hist: list, lo: int, hi: int,
        sure: int | None = None,
    ) -> tuple[int, list, bool]:
        """Stabilise and rate-limit ``raw``; ``sure`` (every path covered) skips both down.

        Returns ``(replicas, new_history, skipped)``, ``skipped`` when ``sure`` decided.
        """
        p = self.params
        stab, hist = stabilised_target(hist, now, raw, float(p["scale_down_window_s"]))
        target = min(hi, max(lo, stab))
        if sure is not None and p["sure_scale_down"] and sure < target:
            held = min(hi, max(lo, raw, sure))
            if held < current:
                # no path of the forecast needs more over [now, now + boot + sync]: the
                # hysteresis and the down-rate limit would only pay for idle replicas; the
                # window's older, higher counts are spent (else the next wide forecast
                # would read them as a scale-up back to where it was)
                return held, [(t, min(d, held)) for t, d in hist], True
        out = rate_limit(
            current,
            target,
            max_up_ratio=float(p["max_scale_up_ratio"]),
            max_up_abs=int(p["max_scale_up_abs"]),
            max_down_ratio=float(p["max_scale_down_ratio"]),
            max_down_abs=int(p["max_scale_down_abs"]),
        )
        return min(hi, max(lo, out)), hist, False

    def _samples(self, forecast: Forecast | None) -> np.ndarray | None:
        if forecast is None or forecast.num_samples == 0 or forecast.horizon == 0:
            return None
        ind = self.params["indicator"]
        if ind is None:
            return forecast.samples[:, :, 0]  # (S, H)
        return forecast.indicator(ind)  # (S, H)

    # ------------------------------------------------------------------ decide
    def decide(self, spec: Spec, obs: Observation, forecast: Forecast | None, now: float,
               memory: Any = None) -> Decision:
        """Replica count for ``now``; see the module docstring for inputs and rules."""
        memory = memory or {}
        cap = float(spec.capacity)
        current = int(obs.replicas or 0)
        boot = self.params["boot_delay_s"]
        if boot is None:
            boot = spec.boot_s or 0.0
        boot = float(boot)
        sync = float(spec.sync_s)
        lo, hi = int(spec.min_replicas), int(spec.max_replicas)

        # learn from what happened since the last decision (pure: a new posterior)
        post = memory.get("risk")
        if self.params["learn_risk"]:
            v, n = observed_violations(spec, obs, memory, cap)
            post = self.learner.update(post, v, n)
        elif post is None:
            post = self.learner.initial()
        eps = self.learner.eps(post) if self.params["learn_risk"] else self.learner.target
        hist = list(memory.get("desired", []))
        n_seen = len(obs.demand)
        new_state = {"risk": post, "desired": hist, "n_seen": n_seen,
                     "seen_until_s": float(obs.start_s) + n_seen * float(spec.step_s)}

        x = self._samples(forecast)
        if x is None:
            return self._fallback(obs, new_state, now, current, cap, sync, lo, hi, eps,
                                  forecast)

        # (S,) per-path peaks: from ready time through the next sync, and from now
        origin = forecast_origin(spec, obs, forecast)
        h = x.shape[1]
        w_ready = window_steps(origin, forecast.step, h, now + boot, now + boot + sync)
        w_all = window_steps(origin, forecast.step, h, now, now + boot + sync)
        peak_ready = window_max(x, w_ready)
        peak_all = window_max(x, w_all)
        if self.params["objective"] == "priced":
            # price of a violation in replica-intervals: 1/eps (see module docstring)
            price, mr = 1.0 / eps, float(self.params["max_risk"])
            n_ready = priced_units(peak_ready, cap, price, mr, floor=lo, ceiling=hi)[0]
            n_all = priced_units(peak_all, cap, price, mr, floor=lo, ceiling=hi)[0]
        else:
            n_ready, _ = chance_constrained_units(peak_ready, cap, eps, floor=lo, ceiling=hi)
            n_all, _ = chance_constrained_units(peak_all, cap, eps, floor=lo, ceiling=hi)
        raw = max(n_ready, min(current, n_all))
        # the count that covers every path over the whole window (no risk left to price)
        n_sure = min(hi, max(lo, math.ceil(float(peak_all.max()) / cap - 1e-9)))
        # trusted only while the forecast has earned it: the realised violation rate is
        # confidently below its target (a forecast whose every path misses a burst is wrong
        # more often than that, and then the hysteresis is what saves the next rise)
        trusted = (not self.params["learn_risk"] or self.learner.prob_above_target(post)
                   <= float(self.params["sure_max_p_above"]))
        out, hist, sure = self._smooth(raw, current, now, hist, lo, hi,
                                       sure=n_sure if trusted else None)
        new_state["desired"] = hist
        p_viol = exceed_probability(peak_ready, out * cap)
        exp_cost = out * sync  # replica-seconds until the next decision
        why = (
            f"{out} replicas: P(demand > capacity) = {p_viol:.3%} over "
            f"[now+{boot:.0f}s, now+{boot + sync:.0f}s] at operating risk {eps:.3%} "
            f"(target {self.learner.target:.3%}, realised ~{RiskLearner.rate_mean(post):.3%})"
        )
        if sure:
            why += (f"; every forecast path fits in {n_sure}: scaled down from {current} "
                    "without waiting")
        elif out != raw:
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
                "replicas_every_path": int(n_sure),
                "sure_scale_down": bool(sure),
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
        obs: Observation,
        new_state: dict,
        now: float,
        current: int,
        cap: float,
        sync: float,
        lo: int,
        hi: int,
        eps: float,
        forecast: Forecast | None,
    ) -> Decision:
        demand = obs.latest_demand()
        reason = "no forecast" if forecast is None else "forecast has no samples"
        if demand is None:
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
        out, hist, _ = self._smooth(raw, current, now, new_state["desired"], lo, hi)
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
                "expected_cost": out * sync,
            },
            fallback=True,
            state=new_state,
        )
