"""Knative Pod Autoscaler (KPA) for the ``vm`` scenario.

Follows Knative Serving's ``pkg/autoscaler/scaling/autoscaler.go`` (``Scale``) with the
documented defaults of ``config-autoscaler``:

* the observed load (Knative: request concurrency summed over the revision) is averaged
  over a **stable window** of 60 s and a **panic window** of 6 s (10 % of stable);
* ``target = capacity * target_util`` per replica (``container-concurrency-target`` x
  ``container-concurrency-target-percentage``, 70 %);
* ``dspc = ceil(stable / target)``, ``dppc = ceil(panic / target)``, each clipped to
  ``[floor(ready / max_scale_down_rate), ceil(ready * max_scale_up_rate)]`` with
  ``ready = max(1, ready replicas)`` (rates 2 and 1000);
* **panic** starts (or is extended) whenever ``dppc / ready >= panic_threshold`` (200 %)
  and ends once the threshold has not been crossed for a whole stable window; in panic
  the desired count is ``max(dspc, dppc)`` and never goes below the highest count
  requested during this panic (``maxPanicPods``): panic never scales down;
* otherwise the desired count is the stable one.

Knative's autoscaler ticks every 2 s (``sync_s``); scale to zero is not modelled
(``min_replicas`` >= 1 for vm). The result is clamped to ``[min_replicas, max_replicas]``
like the PodAutoscaler reconciler's min/max-scale bounds.

Reads the ``vm`` contract (:mod:`policies.scenarios.vm`) like :mod:`policies.hpa`.
Memory: ``(panic_since_s or None, max_panic_pods)``.
"""

from __future__ import annotations

import math
from typing import Any

from policies.base import Decision, Policy
from policies.registry import register
from policies.scenarios.vm import Observation, Spec


@register
class KPA(Policy):
    """Knative KPA with its default windows, panic mode and rate limits."""

    name = "kpa"
    scenario = "vm"
    defaults = {
        "target_util": 0.7,  # container-concurrency-target-percentage (0-1)
        "stable_window_s": 60.0,  # stable-window, seconds
        "panic_window_pct": 10.0,  # panic-window-percentage of the stable window
        "panic_threshold": 2.0,  # panic-threshold-percentage 200 % as a ratio
        "max_scale_up_rate": 1000.0,
        "max_scale_down_rate": 2.0,
        "sync_s": 2.0,  # autoscaler tick interval, seconds
    }
    sweep_param = "target_util"
    sweep_grid = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        if not 0.0 < float(self.params["target_util"]) <= 1.5:
            raise ValueError(
                f"kpa: target_util must be in (0, 1.5], got {self.params['target_util']}"
            )
        p = self.params
        # plain floats once, not per decision (the replay calls decide ~10^5 times a run)
        self._stable_w = float(p["stable_window_s"])
        self._panic_w = self._stable_w * float(p["panic_window_pct"]) / 100.0
        self._util = float(p["target_util"])
        self._threshold = float(p["panic_threshold"])
        self._up_rate = float(p["max_scale_up_rate"])
        self._down_rate = float(p["max_scale_down_rate"])

    def decide(self, spec: Spec, obs: Observation, forecast: Any, now: float,
               memory: Any = None) -> Decision:
        """Return ``{"replicas": n}`` for ``now``; invalid (keep) without data."""
        panic_since, max_panic = memory if memory is not None else (None, 0)
        stable_w = self._stable_w
        step_s = spec.step_s
        stable = obs.window_mean(stable_w, step_s)
        if stable is None:
            return Decision(
                action={"replicas": int(obs.replicas)}, valid=False, why="no data",
                state=(panic_since, max_panic),
            )
        panic = obs.window_mean(self._panic_w, step_s)
        now = float(now)
        target = float(spec.capacity) * self._util
        ready = float(obs.ready)
        if ready < 1.0:
            ready = 1.0
        max_up = math.ceil(self._up_rate * ready)
        max_down = math.floor(ready / self._down_rate)
        dspc = math.ceil(stable / target)
        dppc = math.ceil(panic / target)
        stable_pods = int(min(max(dspc, max_down), max_up))
        panic_pods = int(min(max(dppc, max_down), max_up))
        if dppc / ready >= self._threshold:
            panic_since = now  # start or extend panic
        elif panic_since is not None and panic_since + stable_w < now:
            panic_since, max_panic = None, 0
        desired = stable_pods
        if panic_since is not None:
            if panic_pods > desired:
                desired = panic_pods
            if desired > max_panic:
                max_panic = desired
            else:
                desired = max_panic  # never scale down while panicking
        lo, hi = int(spec.min_replicas), int(spec.max_replicas)
        desired = hi if desired > hi else (lo if desired < lo else desired)
        in_panic = panic_since is not None
        return Decision(
            action={"replicas": desired},
            valid=True,
            why="panic" if in_panic else "stable",
            details={
                "stable_load": stable, "panic_load": panic, "dspc": dspc, "dppc": dppc,
                "panic": in_panic,
            },
            state=(panic_since, max_panic),
        )
