"""Shared math of the Bayesian decision engine (``bayes`` for vm, serverless, power).

Everything here is pure numpy on arrays handed in; nothing reads a clock or a file.

* :func:`chance_constrained_units` — the fewest capacity units ``n`` with
  ``P(demand > n * unit) <= eps`` read from predictive samples, with its expected cost.
* :func:`window_max` — per-sample-path maximum over the horizon steps a decision covers.
* :class:`RiskLearner` — a discounted Beta–Bernoulli posterior over the realised violation
  rate that moves the operating risk level (the quantile the chance constraint uses) so the
  realised rate meets its target without overspending.
* :func:`newsvendor_counts` — critical-fractile counts per column of a sample matrix.
* :func:`rate_limit` / :func:`stabilised_target` — scale-rate limits and scale-down hysteresis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import betainc


def window_steps(start: float, step: float, horizon: int, t_from: float, t_to: float) -> slice:
    """Horizon indices whose intervals overlap ``[t_from, t_to]`` (seconds).

    Forecast step ``h`` stands for the interval ``[start + h * step, start + (h+1) * step)``
    (demand is piecewise constant per sample). The slice always holds at least one step,
    clipped to the horizon, so a short forecast still yields a decision: a window past the
    horizon reads the last step.

    Args:
        start: unix seconds where forecast step 0 begins.
        step: seconds between forecast steps (> 0).
        horizon: number of forecast steps H.
        t_from: first instant the decision must cover (seconds).
        t_to: last instant the decision must cover (seconds, >= t_from).

    Returns:
        A slice into the horizon axis.

    """
    if step <= 0:
        raise ValueError(f"forecast step must be > 0 seconds, got {step}")
    lo = max(0, math.floor((t_from - start) / step + 1e-9))
    hi = max(lo + 1, math.ceil((t_to - start) / step - 1e-9))
    lo = min(lo, horizon - 1)
    hi = min(max(hi, lo + 1), horizon)
    return slice(lo, hi)


def window_max(samples: np.ndarray, window: slice) -> np.ndarray:
    """Per-path maximum over the covered steps.

    Args:
        samples: ``(S, H)`` or ``(S, H, M)`` sample paths.
        window: slice of the horizon axis.

    Returns:
        ``(S,)`` or ``(S, M)``: the largest value each path reaches within the window.

    """
    return samples[:, window].max(axis=1)


def exceed_count_allowed(num_samples: int, eps: float) -> int:
    """How many of ``num_samples`` paths may exceed capacity at risk level ``eps``."""
    return int(math.floor(eps * num_samples + 1e-9))


def chance_constrained_units(
    peak: np.ndarray,
    unit: float,
    eps: float,
    *,
    floor: int = 0,
    ceiling: int | None = None,
) -> tuple[int, float]:
    """Fewest units ``n`` with ``P(peak > n * unit) <= eps`` under the empirical law of ``peak``.

    With sorted samples ``x_(1) <= ... <= x_(S)`` and ``k = floor(eps * S)`` paths allowed
    to exceed, capacity must reach ``x_(S-k)``; ``n = ceil(x_(S-k) / unit)``. Since cost grows
    with ``n``, this ``n`` is also the cheapest choice meeting the constraint.

    Args:
        peak: ``(S,)`` per-path peak demand over the covered window (same unit as ``unit``).
        unit: capacity one unit provides (> 0), e.g. CPU percent per replica.
        eps: allowed probability of demand exceeding capacity, in [0, 1).
        floor: the fewest units ever returned.
        ceiling: the most units ever returned (None: unbounded). When the ceiling binds,
            the returned probability says how much risk remains.

    Returns:
        ``(n, p_violation)``: the unit count and the sample estimate of ``P(peak > n * unit)``.

    """
    if unit <= 0:
        raise ValueError(f"capacity per unit must be > 0, got {unit}")
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"risk level eps must be in [0, 1), got {eps}")
    x = np.sort(np.asarray(peak, dtype=np.float64).ravel())
    s = x.size
    if s == 0:
        raise ValueError("no samples to read the chance constraint from")
    k = exceed_count_allowed(s, eps)
    need = x[s - 1 - k]
    # tiny tolerance so 30.0 / 10.0 stays 3 despite float noise
    n = max(floor, math.ceil(need / unit - 1e-9))
    if ceiling is not None:
        n = min(n, ceiling)
    p = float(np.count_nonzero(x > n * unit + 1e-9)) / s
    return int(n), p


def priced_units(
    peak: np.ndarray,
    unit: float,
    price: float,
    max_risk: float,
    *,
    floor: int = 0,
    ceiling: int | None = None,
) -> tuple[int, float, float]:
    """Units minimising ``n + price * P(peak > n * unit)`` subject to ``P <= max_risk``.

    The risk-priced form of the chance constraint: one unit costs 1 and one violation costs
    ``price`` units, so risk is bought back only where it is cheap to buy — a path set whose
    tail is a far-off spike is left at some risk, a tight one is covered fully. ``max_risk``
    stays a hard chance constraint on every decision.

    Args:
        peak: ``(S,)`` per-path peak demand over the covered window.
        unit: capacity per unit (> 0).
        price: cost of a violation in units (>= 0).
        max_risk: hard per-decision bound on ``P(peak > n * unit)``, in [0, 1).
        floor: fewest units.
        ceiling: most units (None: unbounded).

    Returns:
        ``(n, p_violation, objective)``.

    """
    if unit <= 0:
        raise ValueError(f"capacity per unit must be > 0, got {unit}")
    x = np.sort(np.asarray(peak, dtype=np.float64).ravel())
    s = x.size
    if s == 0:
        raise ValueError("no samples to read the chance constraint from")
    n_cc, _ = chance_constrained_units(x, unit, max_risk, floor=floor, ceiling=ceiling)
    n_top = max(n_cc, math.ceil(x[-1] / unit - 1e-9), floor)
    if ceiling is not None:
        n_top = min(n_top, ceiling)
    cand = np.arange(n_cc, max(n_cc, n_top) + 1)  # (K,) feasible counts
    # P(peak > n * unit) for every candidate via one sorted search
    above = s - np.searchsorted(x, cand * unit + 1e-9, side="right")
    p = above / s
    obj = cand + price * p
    i = int(np.argmin(obj))
    return int(cand[i]), float(p[i]), float(obj[i])


def exceed_probability(peak: np.ndarray, capacity: float) -> float:
    """Sample estimate of ``P(peak > capacity)``."""
    x = np.asarray(peak, dtype=np.float64)
    return float(np.count_nonzero(x > capacity + 1e-9)) / x.size


def newsvendor_counts(samples: np.ndarray, fractile: np.ndarray | float) -> np.ndarray:
    """Critical-fractile integer counts per column: the least ``w`` with ``F(w) >= fractile``.

    For integer demand ``C`` with under-provision cost ``c_u`` per unit short and
    over-provision cost ``c_o`` per unit idle, the expected cost is minimised by the least
    ``w`` with ``P(C <= w) >= c_u / (c_u + c_o)``.

    Args:
        samples: ``(S, F)`` demand samples per column (non-negative; rounded up to integers).
        fractile: scalar or ``(F,)`` critical fractile(s) in [0, 1].

    Returns:
        ``(F,)`` int64 counts.

    """
    x = np.ceil(np.asarray(samples, dtype=np.float64) - 1e-9)  # (S, F)
    x = np.sort(x, axis=0)
    s = x.shape[0]
    tau = np.broadcast_to(np.asarray(fractile, dtype=np.float64), (x.shape[1],))
    # least w with #(x <= w) >= tau * S  ->  the ceil(tau*S)-th order statistic (1-indexed)
    idx = np.clip(np.ceil(tau * s - 1e-9).astype(np.int64) - 1, -1, s - 1)
    out = np.where(idx < 0, 0.0, x[np.maximum(idx, 0), np.arange(x.shape[1])])
    return np.maximum(out, 0).astype(np.int64)


# --------------------------------------------------------------------------- risk learning


@dataclass(frozen=True)
class RiskLearner:
    """Adaptive operating risk level from a discounted Beta–Bernoulli posterior.

    Each observed interval is a Bernoulli trial (1 = demand exceeded capacity). The realised
    violation rate ``p`` gets a ``Beta(a, b)`` posterior whose prior is centred on the target
    (``a0 = target * prior_n``, ``b0 = (1 - target) * prior_n``); old evidence decays by
    ``discount`` per observation so the posterior follows a drifting workload.

    The operating level ``eps_op`` (the chance constraint's risk) moves in log space by
    ``gain * (P(p < target) - P(p > target))`` per observation — integral action driven by
    posterior confidence: violations push ``eps_op`` down (a higher quantile, more capacity),
    a long clean run pushes it up (less capacity), and an even posterior leaves it alone.
    This corrects forecasts that are systematically too narrow or too wide.

    Attributes:
        target: the violation rate to attain (the sweep knob), in (0, 1).
        prior_n: prior strength in pseudo-observations.
        discount: per-observation forgetting factor in (0, 1].
        gain: log-space step per observation at full posterior confidence.
        min_ratio: lowest ``eps_op / target`` allowed.
        max_ratio: highest ``eps_op / target`` allowed.

    """

    target: float
    prior_n: float = 20.0
    discount: float = 0.995
    gain: float = 0.01
    min_ratio: float = 0.05
    max_ratio: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 < self.target < 1.0:
            raise ValueError(f"target violation rate must be in (0, 1), got {self.target}")
        if not 0.0 < self.discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {self.discount}")
        if not 0.0 < self.min_ratio <= 1.0 <= self.max_ratio:
            raise ValueError("need 0 < min_ratio <= 1 <= max_ratio")

    def initial(self) -> dict[str, float]:
        """Posterior state before any observation."""
        return {
            "a": self.target * self.prior_n,
            "b": (1.0 - self.target) * self.prior_n,
            "log_eps": math.log(self.target),
            "n_obs": 0.0,
            "n_viol": 0.0,
        }

    def update(self, post: dict[str, float] | None, violations: int, trials: int) -> dict[str, Any]:
        """Fold ``trials`` observations (``violations`` of them bad) into a new posterior.

        Args:
            post: the previous posterior (None: the prior).
            violations: how many of the trials saw demand above capacity.
            trials: how many intervals were observed (0 leaves the posterior unchanged).

        Returns:
            A new posterior dict (the input is not modified).

        """
        if violations < 0 or trials < 0 or violations > trials:
            raise ValueError(f"need 0 <= violations <= trials, got {violations}/{trials}")
        cur = dict(self.initial() if post is None else post)
        if trials == 0:
            return cur
        a0 = self.target * self.prior_n
        b0 = (1.0 - self.target) * self.prior_n
        d = self.discount**trials
        # decay the evidence (not the prior) towards the prior, then add the new trials
        cur["a"] = a0 + d * (cur["a"] - a0) + violations
        cur["b"] = b0 + d * (cur["b"] - b0) + (trials - violations)
        p_over = self.prob_above_target(cur)
        lo = math.log(self.target * self.min_ratio)
        hi = math.log(min(self.target * self.max_ratio, 0.5))
        step = self.gain * trials * ((1.0 - p_over) - p_over)
        cur["log_eps"] = min(hi, max(lo, cur["log_eps"] + step))
        cur["n_obs"] = cur.get("n_obs", 0.0) + trials
        cur["n_viol"] = cur.get("n_viol", 0.0) + violations
        return cur

    def prob_above_target(self, post: dict[str, float]) -> float:
        """Posterior probability that the realised violation rate exceeds the target."""
        return float(1.0 - betainc(post["a"], post["b"], self.target))

    def eps(self, post: dict[str, float] | None) -> float:
        """Operating risk level for the chance constraint."""
        return math.exp((self.initial() if post is None else post)["log_eps"])

    @staticmethod
    def rate_mean(post: dict[str, float]) -> float:
        """Posterior mean of the realised violation rate."""
        return post["a"] / (post["a"] + post["b"])


# --------------------------------------------------------------------------- flapping


def stabilised_target(
    history: list[tuple[float, int]], now: float, desired: int, window_s: float
) -> tuple[int, list[tuple[float, int]]]:
    """Scale-down hysteresis: act on the largest desired count seen within ``window_s``.

    Scale-ups apply at once (the new value is the maximum); scale-downs apply only when
    every recommendation over the window agrees, like HPA's stabilisation window.

    Args:
        history: earlier ``(time_s, desired)`` pairs (not modified).
        now: current time in seconds.
        desired: this decision's raw recommendation.
        window_s: stabilisation window in seconds (0 disables it).

    Returns:
        ``(stabilised, new_history)`` with entries older than the window dropped.

    """
    kept = [(t, d) for (t, d) in history if now - t < window_s] + [(now, desired)]
    return max(d for _, d in kept), kept


def rate_limit(
    current: int,
    target: int,
    *,
    max_up_ratio: float,
    max_up_abs: int,
    max_down_ratio: float,
    max_down_abs: int,
) -> int:
    """Limit one step's change: up to ``max(current*(ratio-1), abs)`` more, likewise down.

    Args:
        current: units now running.
        target: units wanted.
        max_up_ratio: at most this factor of ``current`` after a scale-up (>= 1).
        max_up_abs: at least this many units may always be added.
        max_down_ratio: fraction of ``current`` that may be removed in one step (0..1).
        max_down_abs: at least this many units may always be removed.

    Returns:
        The unit count to set now.

    """
    if target > current:
        allowed = max(math.floor(current * max_up_ratio), current + max_up_abs)
        return min(target, allowed)
    if target < current:
        allowed = min(math.ceil(current * (1.0 - max_down_ratio)), current - max_down_abs)
        return max(target, allowed)
    return current
