"""Kubernetes Horizontal Pod Autoscaler (``autoscaling/v2``) for the ``vm`` scenario.

The algorithm follows the Kubernetes documentation ("Horizontal Pod Autoscaling",
algorithm details and configurable scaling behaviour) and the controller's
``replica_calculator.go`` / ``horizontal.go``:

1. **Replica calculation** on a resource-utilisation metric averaged over *ready* pods:
   ``usageRatio = currentUtilisation / target``; with no unready pods and
   ``|usageRatio - 1| <= tolerance`` nothing changes, otherwise
   ``desired = ceil(usageRatio * readyPods)``. On a scale-up while some pods are still
   booting (unready), those pods are counted as using 0 %, the ratio is recomputed over
   all pods, and the controller does nothing if the new ratio is within tolerance or
   reverses the direction (as ``GetResourceReplicas`` does).
2. **Stabilisation**: the recommendation applied is the *maximum* of the raw
   recommendations of the last ``down_window_s`` seconds (300 s) when scaling down and
   the *minimum* over ``up_window_s`` (0 s) when scaling up.
3. **Rate limits** (default behaviour): scale up by at most
   ``max(+up_percent %, +up_pods)`` per ``up_period_s`` (100 % or 4 pods per 15 s,
   ``selectPolicy: Max``), scale down by at most ``down_percent`` % per
   ``down_period_s`` (100 % per 15 s), counted from the replica count at the start of
   the period (``currentReplicas`` minus the pods added plus those deleted within it);
   the scale-up percentage is rounded up, the scale-down one truncated, as in
   ``calculateScaleUpLimitWithScalingRules`` / ``calculateScaleDownLimitWithBehaviors``.
4. Clamp to ``[max(1, min_replicas), max_replicas]`` (Kubernetes needs ``minReplicas >= 1``).

The observed utilisation is ``mean demand over the last metric_window_s seconds /
(ready * capacity)`` (the metrics pipeline reports usage averaged over a short window;
15 s here). Kubernetes' CPU initialisation period (pods ignored for 5 min after start
unless ready) is not modelled: a replica reports metrics once it is ready.

Reads the ``vm`` contract (:mod:`policies.scenarios.vm`): ``spec.capacity`` (demand units
one replica serves), ``spec.min_replicas`` / ``spec.max_replicas``, ``spec.step_s``
(seconds per demand sample); ``obs.ready``, ``obs.replicas`` (requested, ready + booting)
and the observed demand through ``obs.window_mean``.

Memory (returned in ``Decision.state``, passed back unchanged): ``(recommendations,
scale_events)``, two tuples of ``(time_s, value)`` pairs inside their windows.
"""

from __future__ import annotations

import math
from typing import Any

from policies.base import Decision, Policy
from policies.registry import register
from policies.scenarios.vm import Observation, Spec


def _period_start(current: int, events: tuple, cutoff: float) -> int:
    """Replicas at the start of a rate-limit period: current - added + deleted since cutoff."""
    return current - sum(c for t, c in events if t > cutoff)


@register
class HPA(Policy):
    """Kubernetes HPA v2 with its default behaviour; knob ``target`` (utilisation 0-1)."""

    name = "hpa"
    scenario = "vm"
    defaults = {
        "target": 0.8,  # target average utilisation of ready replicas (0-1)
        "tolerance": 0.1,  # no change while |usageRatio - 1| <= tolerance
        "sync_s": 15.0,  # --horizontal-pod-autoscaler-sync-period, seconds
        "metric_window_s": 15.0,  # window the utilisation is averaged over, seconds
        "down_window_s": 300.0,  # scaleDown.stabilizationWindowSeconds
        "up_window_s": 0.0,  # scaleUp.stabilizationWindowSeconds
        "up_percent": 100.0,  # scaleUp policy Percent, per up_period_s
        "up_pods": 4,  # scaleUp policy Pods, per up_period_s
        "up_period_s": 15.0,  # periodSeconds of both scale-up policies
        "down_percent": 100.0,  # scaleDown policy Percent, per down_period_s
        "down_period_s": 15.0,  # periodSeconds of the scale-down policy
    }
    sweep_param = "target"
    sweep_grid = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not 0.0 < float(self.params["target"]) <= 1.5:
            raise ValueError(f"hpa: target must be in (0, 1.5], got {self.params['target']}")
        # plain floats once, not per decision (the replay calls decide ~10^4-10^5 times)
        self._f = {k: float(v) for k, v in self.params.items()}

    def _raw_recommendation(self, spec: Spec, obs: Observation,
                            current: int) -> tuple[int | None, str, dict]:
        """Replica calculator: the un-stabilised recommendation, or None without data."""
        f = self._f
        ready = int(obs.ready)
        unready = max(0, current - ready)
        load = obs.window_mean(f["metric_window_s"], spec.step_s)
        if load is None or ready <= 0:
            return None, "no metrics from ready replicas", {}
        cap = float(spec.capacity)
        target = f["target"]
        tol = f["tolerance"]
        utilisation = load / (ready * cap)
        ratio = utilisation / target
        details = {"utilisation": utilisation, "usage_ratio": ratio, "load": load}
        if not (unready > 0 and ratio > 1.0):
            if abs(1.0 - ratio) <= tol:
                return current, "within tolerance", details
            return math.ceil(ratio * ready), "usage ratio", details
        # Scale-up with unready pods: they count as 0 % utilisation.
        new_ratio = load / ((ready + unready) * cap) / target
        details["usage_ratio_with_unready"] = new_ratio
        if abs(1.0 - new_ratio) <= tol or new_ratio < 1.0:
            return current, "unready replicas absorb the load", details
        new = math.ceil(new_ratio * (ready + unready))
        if new < current:
            return current, "unready replicas absorb the load", details
        return new, "usage ratio with unready replicas at 0%", details

    def decide(self, spec: Spec, obs: Observation, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        """Return ``{"replicas": n}`` for ``now``; invalid (keep) without metrics."""
        f = self._f
        recs, events = memory if memory is not None else ((), ())
        current = int(obs.replicas)
        # Kubernetes requires minReplicas >= 1 (scale to zero is an alpha feature gate)
        lo, hi = max(1, int(spec.min_replicas)), int(spec.max_replicas)
        raw, why, details = self._raw_recommendation(spec, obs, current)
        if raw is None:
            return Decision(
                action={"replicas": current}, valid=False, why=why, state=(recs, events)
            )
        now = float(now)
        # Stabilisation over the recommendations strictly inside each window.
        up_cut = now - f["up_window_s"]
        down_cut = now - f["down_window_s"]
        up_rec = down_rec = raw
        for t, r in recs:
            if t > up_cut and r < up_rec:
                up_rec = r
            if t > down_cut and r > down_rec:
                down_rec = r
        stabilised = current
        if stabilised < up_rec:
            stabilised = up_rec
        if stabilised > down_rec:
            stabilised = down_rec
        # recommendations arrive in time order: drop the expired ones from the front
        cut = now - max(f["down_window_s"], f["up_window_s"])
        i = 0
        while i < len(recs) and recs[i][0] <= cut:
            i += 1
        recs = recs[i:] + ((now, raw),)
        # Rate limits, from the replica count at the start of each period.
        desired = stabilised
        limited = ""
        if desired > current:
            start = _period_start(current, events, now - f["up_period_s"])
            up_limit = max(
                math.ceil(start * (1.0 + f["up_percent"] / 100.0)),  # rounded up, as k8s
                start + int(f["up_pods"]),
            )
            allowed = min(hi, up_limit)
            if desired > allowed:
                desired, limited = allowed, "scale-up rate limit"
        elif desired < current:
            start = _period_start(current, events, now - f["down_period_s"])
            down_limit = int(start * (1.0 - f["down_percent"] / 100.0))  # truncated, as k8s
            allowed = max(lo, down_limit)
            if desired < allowed:
                desired, limited = allowed, "scale-down rate limit"
        desired = min(hi, max(lo, desired))
        keep_ev = max(f["up_period_s"], f["down_period_s"])
        events = tuple((t, c) for t, c in events if t > now - keep_ev)
        if desired != current:
            events += ((now, desired - current),)
        details.update(raw=raw, stabilised=stabilised, desired=desired)
        if desired == current:
            why = f"hold {current}: {why}"
        else:
            why = f"{current} -> {desired}: {why}" + (f", {limited}" if limited else "")
        return Decision(
            action={"replicas": desired}, valid=True, why=why, details=details,
            state=(recs, events),
        )
