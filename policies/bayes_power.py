"""``bayes`` for the ``power`` scenario: chance-constrained capping and row planning.

From joint samples of per-server power ``[S, H, N]`` the policy estimates, path by path,
the probability that the row exceeds its budget before a cap decided now could act:

    P_breach(C) = P( max_{h in window} sum_i min(P_ih, max(cap_i, idle)) > budget )

where ``C`` is the set of capped servers and the window is the one the caps decided now
govern: from ``now + delay_s`` (when they act) to one step later (when the next decision's
caps act). If ``P_breach`` under the caps in force exceeds ``target_breach``, it caps the
**fewest lowest-priority** servers that bring it back under, at the **highest** common cap
level that does (:func:`select_caps`); caps in force are kept while they are needed; when
the uncapped row is safe with margin (``P_breach <= release_ratio * target_breach``) for
``release_hold_s`` seconds, every cap is lifted. Every Decision reports the probability
with and without caps, and the risk in the delay before the caps act, which no decision
taken now can change.

The samples come from the scenario's online forecaster (``policies.pipeline``): analogs
drawn per group of servers whose step changes correlate (a synchronous job's GPUs stay
joint, independent pods are drawn independently), because one analog per path for the whole
row never puts the row above its past peaks and left the upper tail uncovered (issue 11,
``docs/power.md``). The forecast reaches just past the window (:meth:`BayesPower.forecast_steps`).

Planning: :func:`plan_servers` answers "how many servers can this row host for a target
breach probability" from per-server power traces or samples, and :func:`plan_row` wraps it
for the CLI.

Fallback (no forecast: the first step, or a failed forecaster): reactive thresholds on the
observed row power — cap the lowest-priority servers at idle, one by one, while the row is
above ``fallback_cap_frac * budget``; lift every cap below ``fallback_uncap_frac * budget``;
hold in between — with ``fallback=True`` and the rule in ``why``.

Reads the ``power`` contract (:mod:`policies.scenarios.power`): ``spec.servers`` (N),
``spec.server_ids``, ``spec.budget_w``, ``spec.p_max_w``, ``spec.p_idle_w``,
``spec.priority`` (N,) (lower is capped first), ``spec.step_s``, ``spec.delay_s``;
``obs.server_power_w`` (N,) observed and ``obs.caps_w`` (N,) in force (``inf`` = none).
Memory (this policy's previous ``Decision.state``): when the row last became calm. The
forecast's step 0 is the step starting at ``now``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from models.forecast import Forecast
from policies.base import Decision, Policy
from policies.bayes_common import window_steps
from policies.registry import register
from policies.scenarios.power import Observation, Spec


def row_breach_probability(
    samples: np.ndarray, budget_w: float, caps_w: np.ndarray, idle_w: float = 0.0
) -> float:
    """Probability that the row's power exceeds ``budget_w`` at some step of ``samples``.

    Args:
        samples: ``(S, H, N)`` joint per-server demanded power over the window (watts).
        budget_w: row budget (watts).
        caps_w: ``(N,)`` cap per server (watts; ``inf`` = uncapped). A capped server draws
            ``min(P, max(cap, idle_w))``: no cap takes a running server below idle.
        idle_w: idle power (watts).

    Returns:
        Fraction of paths whose row power exceeds the budget at any step.

    """
    lim = np.maximum(caps_w, idle_w)[None, None, :]  # (1, 1, N)
    row = np.minimum(samples, lim).sum(axis=2)  # (S, H)
    return float(np.mean(row.max(axis=1) > budget_w + 1e-9))


def cap_order(priority: np.ndarray, reduction: np.ndarray) -> np.ndarray:
    """Server indices in capping order: lowest priority first, larger reduction first."""
    return np.lexsort((-reduction, priority))


def select_caps(
    samples: np.ndarray,
    budget_w: float,
    priority: np.ndarray,
    eps: float,
    *,
    idle_w: float,
    max_w: float,
) -> tuple[np.ndarray, float]:
    """Caps on the fewest lowest-priority servers, as high as possible, with ``P_breach <= eps``.

    Servers are added one at a time, held at idle, from the lowest priority class that still
    has uncapped servers: each time the one that brings the most over-budget paths under the
    budget, ties broken by the most excess power removed over the over-budget paths (the
    servers that are high *in the paths that breach*, e.g. those whose power is rising,
    rather than the ones high on average); until ``P_breach <= eps``. Then the highest
    common cap level for the chosen servers that still meets it (bisection), so no server is
    clipped deeper than needed. Capped server-time counts servers, not depth, so the fewest
    servers is what is minimised.

    Args:
        samples: ``(S, H, N)`` joint demanded power over the window the caps will govern.
        budget_w: row budget (watts).
        priority: ``(N,)`` lower values are capped first.
        eps: allowed breach probability.
        idle_w: the deepest a cap can hold a server (watts).
        max_w: server nameplate (watts): a cap at or above it does nothing.

    Returns:
        ``(caps_w, p_breach)``: ``(N,)`` caps (``inf`` = uncapped) and the breach probability
        under them. If capping every server at idle is not enough, all are capped at idle
        and the remaining probability is returned.

    """
    s, h, n = samples.shape
    caps = np.full(n, np.inf)
    limit = budget_w + 1e-9
    row = samples.sum(axis=2)  # (S, H)
    p = float(np.mean(row.max(axis=1) > limit))
    if p <= eps:
        return caps, p
    cut = np.maximum(samples - idle_w, 0.0)  # (S, H, N) power removed by a cap at idle
    free = np.ones(n, dtype=bool)
    prio = np.asarray(priority, dtype=np.float64)
    chosen: list[int] = []
    while p > eps and free.any():
        cls = free & (prio == prio[free].min())  # the lowest class with uncapped servers
        cand = np.flatnonzero(cls)
        over = row.max(axis=1) > limit  # (S,) paths that breach now
        r_over = row[over]  # (B, H)
        after = r_over[:, :, None] - cut[over][:, :, cand]  # (B, H, C)
        fixed = (after.max(axis=1) <= limit).sum(axis=0)  # (C,) paths brought under
        removed = (np.maximum(r_over - limit, 0.0)[:, :, None]
                   - np.maximum(after - limit, 0.0)).sum(axis=(0, 1))  # (C,) excess cut
        best = int(cand[np.lexsort((-removed, -fixed))[0]])
        chosen.append(best)
        free[best] = False
        row = row - cut[:, :, best]
        p = float(np.mean(row.max(axis=1) > limit))
    caps[chosen] = idle_w
    if p > eps:
        return caps, p
    # raise the common level of the chosen caps while the constraint holds
    lo, hi = idle_w, max_w
    for _ in range(20):
        mid = 0.5 * (lo + hi)
        trial = caps.copy()
        trial[chosen] = mid
        if row_breach_probability(samples, budget_w, trial, idle_w) <= eps:
            lo = mid
        else:
            hi = mid
    caps[chosen] = math.floor(lo)  # whole watts, rounded towards safety
    return caps, row_breach_probability(samples, budget_w, caps, idle_w)


def plan_servers(
    power_w: np.ndarray,
    budget_w: float,
    target_breach: float,
    *,
    num_rows: int = 2000,
    max_servers: int | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """How many servers a row can host so that ``P(row power > budget) <= target_breach``.

    A row of ``n`` servers is simulated by drawing, for each of ``num_rows`` random rows, one
    time index and ``n`` server columns (with replacement when ``n`` exceeds the columns):
    servers observed at the same instant keep their correlation (synchronised jobs peak
    together), which is what makes a row's peak smaller than the sum of peaks. The same
    random draws serve every ``n`` (row ``n + 1`` adds one server to row ``n``), so the
    estimated probability never falls as ``n`` grows and a bisection finds the largest
    ``n``.

    Args:
        power_w: ``(T, N)`` per-server power over time (watts), or ``(S, H, N)`` samples.
        budget_w: row power budget (watts, > 0).
        target_breach: allowed probability that the row exceeds its budget at a random
            instant, in [0, 1).
        num_rows: Monte Carlo rows.
        max_servers: upper end of the search (default: budget / smallest server mean x 4).
        seed: seed of the draws.

    Returns:
        Dict with ``servers`` (the answer), ``p_breach`` at that count, ``servers_at_peak``
        (``floor(budget / largest observed server power)``, the row without oversubscription)
        and ``gain`` (``servers / servers_at_peak - 1``).

    """
    x = np.asarray(power_w, dtype=np.float64)
    if x.ndim == 3:
        x = x.reshape(-1, x.shape[2])  # every sample-step is an instant
    if x.ndim != 2 or x.size == 0:
        raise ValueError(f"power_w must be (T, N) or (S, H, N), got shape {np.shape(power_w)}")
    if not budget_w > 0:
        raise ValueError(f"budget_w must be > 0 watts, got {budget_w}")
    if not 0.0 <= target_breach < 1.0:
        raise ValueError(f"target_breach must be in [0, 1), got {target_breach}")
    t_len, n_cols = x.shape
    peak = float(x.max())
    at_peak = int(math.floor(budget_w / peak)) if peak > 0 else 0
    hi = max_servers or max(1, int(4 * budget_w / max(float(x.mean(axis=0).min()), 1e-9)))
    rng = np.random.default_rng(seed)
    t_idx = rng.integers(0, t_len, size=num_rows)  # (R,)
    cols = rng.integers(0, n_cols, size=(num_rows, hi))  # (R, hi)
    if hi <= n_cols:  # distinct servers while the pool allows it
        cols = np.argsort(rng.random((num_rows, n_cols)), axis=1)[:, :hi]
    cum = np.cumsum(x[t_idx[:, None], cols], axis=1)  # (R, hi): row power with n = 1..hi

    def p_at(n: int) -> float:
        return float(np.mean(cum[:, n - 1] > budget_w + 1e-9)) if n > 0 else 0.0

    lo_n, hi_n = 0, hi  # p_at(lo_n) <= target holds; search the largest such n
    if p_at(hi_n) <= target_breach:
        lo_n = hi_n
    while hi_n - lo_n > 1:
        mid = (lo_n + hi_n) // 2
        if p_at(mid) <= target_breach:
            lo_n = mid
        else:
            hi_n = mid
    return {
        "servers": lo_n,
        "p_breach": p_at(lo_n),
        "servers_at_peak": at_peak,
        "gain": (lo_n / at_peak - 1.0) if at_peak > 0 else float("inf"),
        "budget_w": float(budget_w),
        "target_breach": float(target_breach),
        "rows_simulated": int(num_rows),
    }


def plan_row(frame: Any, budget_w: float, target_breach: float, **kw: Any) -> dict[str, Any]:
    """CLI-friendly :func:`plan_servers` on a canonical long frame's ``power_w`` rows.

    Args:
        frame: canonical long frame (entity, metric, ts, value) with ``power_w`` rows.
        budget_w: row budget (watts).
        target_breach: allowed breach probability.
        **kw: passed to :func:`plan_servers`.

    Returns:
        :func:`plan_servers`' dict plus ``pool`` (servers in the trace).

    """
    from common.errors import NoDataError

    rows = frame[frame["metric"] == "power_w"]
    if rows.empty:
        raise NoDataError("the trace has no power_w rows to plan a row from")
    wide = aligned_power(rows)
    out = plan_servers(wide, budget_w, target_breach, **kw)
    out["pool"] = int(wide.shape[1])
    return out


def aligned_power(rows: Any) -> np.ndarray:
    """Per-server power ``(T, N)`` on one clock, as the power scenario aligns series.

    Series share one clock (by timestamp, gaps holding the last value) when at least half of
    them span 90 % of the union of their spans; otherwise (independent runs recorded at
    different times) each runs from its own first sample, cut to the shortest.
    """
    groups = {e: g.sort_values("ts") for e, g in rows.groupby("entity", sort=True)}
    lo = min(float(g["ts"].iloc[0]) for g in groups.values())
    hi = max(float(g["ts"].iloc[-1]) for g in groups.values())
    spans = [float(g["ts"].iloc[-1]) - float(g["ts"].iloc[0]) for g in groups.values()]
    if hi > lo and np.mean([sp >= 0.9 * (hi - lo) for sp in spans]) >= 0.5:
        wide = rows.pivot_table(index="ts", columns="entity", values="value").ffill().bfill()
        return wide.to_numpy(dtype=np.float64)
    n = min(len(g) for g in groups.values())
    return np.column_stack([g["value"].to_numpy(np.float64)[:n] for g in groups.values()])


@register
class BayesPower(Policy):
    """Caps the fewest low-priority servers that keep P(row breach) under the target."""

    name = "bayes"
    scenario = "power"
    needs_forecast = True
    defaults = {
        "target_breach": 0.01,  # allowed P(row power > budget) over the window the caps govern
        "horizon": None,  # forecast steps; None: through the decision window (delay + step), +1
        "release_ratio": 0.5,  # lift caps only when uncapped P_breach <= this * target
        "release_hold_s": 0.0,  # ... and that has held this long (s; 0: at the first calm
        # decision; the margin release_ratio already keeps caps from flapping, and a hold on
        # a 57 s row kept every cap a whole extra step)
        "fallback_cap_frac": 0.9,  # reactive rule: cap above this fraction of the budget
        "fallback_uncap_frac": 0.8,  # reactive rule: uncap below this fraction
    }
    sweep_param = "target_breach"
    sweep_grid = (0.0005, 0.001, 0.005, 0.01, 0.02, 0.05, 0.1)

    def decide(self, spec: Spec, obs: Observation, forecast: Forecast | None, now: float,
               memory: Any = None) -> Decision:
        """Caps for the step starting at ``now``: ``{"caps": (N,) watts, inf = none}``."""
        memory = dict(memory or {})
        n = spec.servers
        budget = float(spec.budget_w)
        idle = float(spec.p_idle_w)
        pmax = float(spec.p_max_w)
        step = float(spec.step_s)
        delay = float(spec.delay_s)
        prio = spec.priority
        caps_now = np.asarray(obs.caps_w, dtype=np.float64)
        if forecast is None or forecast.num_samples == 0 or forecast.horizon == 0:
            return self._fallback(obs, memory, n, budget, idle, prio, caps_now)
        eps = float(self.params["target_breach"])
        x = self._matrix(spec, forecast, n)  # (S, H, N)
        # caps decided now act from now + delay until the next decision's act a step later
        w = window_steps(forecast.start, forecast.step, x.shape[1], now + delay,
                         now + delay + step)
        win = x[:, w, :]  # (S, W, N)
        w_early = window_steps(forecast.start, forecast.step, x.shape[1], now, now + delay)
        p_early = row_breach_probability(x[:, w_early, :], budget, caps_now, idle)
        none = np.full(n, np.inf)
        p_free = row_breach_probability(win, budget, none, idle)
        p_keep = row_breach_probability(win, budget, caps_now, idle)
        calm = p_free <= float(self.params["release_ratio"]) * eps
        since = memory.get("calm_since")
        since = (now if since is None else since) if calm else None
        held = since is not None and now - since >= float(self.params["release_hold_s"])
        capped_now = np.isfinite(caps_now)
        if p_free <= eps and (not capped_now.any() or held):
            caps, p_new, verb = none, p_free, "uncapped" if not capped_now.any() else "lift all"
        elif p_keep <= eps and capped_now.any():
            caps, p_new, verb = caps_now.copy(), p_keep, "hold caps"
        else:
            caps, p_new = select_caps(win, budget, prio, eps, idle_w=idle, max_w=pmax)
            verb = "cap"
        memory["calm_since"] = since
        k = int(np.isfinite(caps).sum())
        levels = caps[np.isfinite(caps)]
        why = (
            f"{verb}: {k}/{n} servers capped"
            + (f" at {levels.min():.0f}-{levels.max():.0f} W" if k else "")
            + f"; P(row > {budget:.0f} W in [now+{delay:.0f}s, now+{delay + step:.0f}s]) = "
            f"{p_new:.2%} (uncapped {p_free:.2%}, target {eps:.2%})"
        )
        return Decision(
            action={"caps": caps},
            valid=True,
            why=why,
            details={
                "p_breach": p_new,
                "p_breach_uncapped": p_free,
                "p_breach_before_caps_act": p_early,
                "target_breach": eps,
                "capped_count": k,
                "capped_low_priority": int(np.sum(np.isfinite(caps) & (prio <= prio.min()))),
                "window_s": [delay, delay + step],
                "forecast_model": forecast.model,
            },
            fallback=False,
            state=memory,
        )

    def forecast_steps(self, spec: Spec) -> int:
        """Return the forecast steps a decision reads.

        ``horizon``, or by default through its window ``[now + delay, now + delay + step]``
        plus one step (step 0 is the step starting at ``now``): 42 for a 1 s row with a 40 s
        delay, 3 for a 57 s row.
        """
        if self.params["horizon"] is not None:
            return max(1, int(self.params["horizon"]))  # a forecast covers at least one step
        return int(math.ceil((float(spec.delay_s) + float(spec.step_s)) / float(spec.step_s))) + 1

    def _matrix(self, spec: Spec, forecast: Forecast, n: int) -> np.ndarray:
        ids = spec.server_ids
        pos = {name: j for j, name in enumerate(forecast.indicators)}
        if all(str(i) in pos for i in ids):
            return forecast.samples[:, :, [pos[str(i)] for i in ids]]
        if forecast.samples.shape[2] != n:
            raise ValueError(f"forecast has {forecast.samples.shape[2]} indicators for {n} servers")
        return forecast.samples

    def _fallback(
        self,
        obs: Observation,
        memory: dict,
        n: int,
        budget: float,
        idle: float,
        prio: np.ndarray,
        caps_now: np.ndarray,
    ) -> Decision:
        power = np.asarray(obs.server_power_w, dtype=np.float64)
        row = float(power.sum())
        hi = float(self.params["fallback_cap_frac"]) * budget
        lo = float(self.params["fallback_uncap_frac"]) * budget
        caps = caps_now.copy()
        if row > hi:
            # cap lowest priority first, at idle, until the observed row is under the threshold
            cut = np.maximum(power - idle, 0.0) * ~np.isfinite(caps)
            est = row
            for i in cap_order(prio, cut):
                if est <= hi:
                    break
                if not np.isfinite(caps[i]):
                    caps[i] = idle
                    est -= cut[i]
            rule = f"row {row:.0f} W > {hi:.0f} W: cap lowest priority first"
        elif row < lo:
            caps[:] = np.inf
            rule = f"row {row:.0f} W < {lo:.0f} W: no caps"
        else:
            rule = f"row {row:.0f} W between {lo:.0f} and {hi:.0f} W: hold"
        return Decision(
            action={"caps": caps},
            valid=True,
            why=f"fallback (no forecast): {rule}",
            details={"reason": "no forecast", "row_power_w": row,
                     "capped_count": int(np.isfinite(caps).sum())},
            fallback=True,
            state=memory,
        )


def main(argv: list[str] | None = None) -> int:
    """Print how many servers a row can host: ``python -m policies.bayes_power TRACE ...``.

    Reads any trace :func:`traces.load` knows; uses its ``power_w`` series, or ``cpu_util``
    through the power scenario's linear model (``--p-idle-w`` .. ``--p-max-w``).
    """
    import argparse
    import json
    import sys

    from common.errors import TidewiseError

    ap = argparse.ArgumentParser(prog="python -m policies.bayes_power", description=main.__doc__)
    ap.add_argument("trace", help="trace file or folder")
    ap.add_argument("--budget-w", type=float, required=True, help="row power budget, watts")
    ap.add_argument("--target", type=float, default=0.001,
                    help="allowed probability that the row exceeds its budget (default 0.001)")
    ap.add_argument("--step", type=float, default=None, help="resample step, seconds")
    ap.add_argument("--p-idle-w", type=float, default=100.0, help="cpu_util model: idle watts")
    ap.add_argument("--p-max-w", type=float, default=300.0, help="cpu_util model: peak watts")
    ap.add_argument("--rows", type=int, default=2000, help="Monte Carlo rows")
    a = ap.parse_args(argv)
    try:
        import traces

        frame = traces.load(a.trace, step=a.step)
        if not (frame["metric"] == "power_w").any():
            util = frame[frame["metric"] == "cpu_util"]
            if util.empty:
                raise TidewiseError(f"{a.trace}: no power_w or cpu_util series to plan from")
            u = np.clip(util["value"].to_numpy() / 100.0, 0.0, 1.0)
            frame = util.assign(metric="power_w", value=a.p_idle_w + u * (a.p_max_w - a.p_idle_w))
        out = plan_row(frame, a.budget_w, a.target, num_rows=a.rows)
    except (TidewiseError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
