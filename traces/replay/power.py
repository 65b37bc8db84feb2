"""The ``power`` replay scenario: a row of servers oversubscribed under a power budget.

Reference model
---------------
* **Server power.** Each trace series is one server. With metric ``power_w`` (e.g. the
  H100 nvidia-smi logs, one GPU = one server) its values are the server's demanded power in
  watts. With ``cpu_util`` (Azure VM 2017, Bitbrains, Alibaba 2018 machines) a linear model
  gives it: ``P = p_idle_w + u · (p_max_w − p_idle_w)``, ``u = cpu_util / 100`` clipped to
  [0, 1]; defaults ``p_idle_w`` = 100 W and ``p_max_w`` = 300 W. ``gpu_util`` (a GPU's duty
  cycle, e.g. the Alibaba GenAI 2026 pods) goes through the same linear model, one GPU = one
  server; pass the GPU's own idle and nameplate (H100: 70 W, 700 W). For ``power_w`` traces
  ``p_max_w`` defaults to the highest power in the trace (rounded up to a watt), a stand-in
  for the nameplate the trace does not record; pass the real one when known.
* **Budget.** The row's budget is sized for ``budget_servers`` servers at nameplate:
  ``budget_w = budget_servers · p_max_w`` (``budget_servers`` defaults to the number of
  series in the trace). A declared row passes its own ``budget_w`` instead (then
  ``budget_servers = floor(budget_w / p_max_w)``, what the budget holds at nameplate) and
  may name its low-priority servers (``low_priority``, series names) instead of a share.
* **Oversubscription.** The row hosts ``servers`` servers (default
  ``round(oversubscription · budget_servers)``, ``oversubscription`` = 1.3). Server ``i``
  replays series ``i mod S`` (S series), shifted circularly by ``(i div S) · floor(T / R)``
  steps, with ``R = ceil(servers / S)`` — so extra servers reuse the series at other times
  of the trace instead of moving in lockstep with their originals.
* **Priorities.** ``low_priority_share`` (default 0.5) of the servers are low priority,
  interleaved evenly: server ``i`` is low priority iff ``floor((i+1)·s) > floor(i·s)``
  (alternate servers for s = 0.5).
* **Time.** Demand holds over each step ``Δ`` of the trace. Before each step ``t`` the
  policy sees telemetry up to ``t − 1`` (the power each server drew, after caps) and sets a
  cap per server (``inf`` = none). A cap takes effect ``delay_s`` (default 40 s) after the
  decision; until then the previous cap holds. With ``delay_s = q·Δ + r`` the first
  ``r`` seconds of step ``t`` run under the caps decided at ``t − q − 1`` and the rest
  under those decided at ``t − q``. A server under cap ``C`` draws ``min(P, max(C,
  p_idle_w))`` (no cap can take a running server below idle). Policies that declare
  ``reads_future`` (the oracle) issue their caps ``delay_s`` ahead, so theirs apply on time.
* **Figures** (time-weighted over the segments of each step):
  ``servers``; ``breach_steps`` — steps in which the row's power after caps exceeds the
  budget at any time; ``capped_fraction`` — share of server-time under a cap in force;
  ``performance_lost`` — clipped energy / demanded energy (clipped energy counts as lost
  work). Also: ``budget_w``, ``budget_servers``, ``breach_fraction`` (breach steps / steps),
  ``demand_breach_steps`` (steps whose uncapped demand exceeds the budget: what an
  uncontrolled row would breach), ``peak_row_power_w``, ``mean_row_power_w``,
  ``energy_demanded_kwh``, ``energy_clipped_kwh``, ``performance_lost_low`` /
  ``performance_lost_high`` (per priority class), ``low_priority_servers``, ``steps``,
  ``step_s``, ``fallback_steps``, ``invalid_steps``.
* **Static peak** (``nameplate_row = True`` on the policy): the row hosts only
  ``budget_servers`` servers (the first ones), which can never breach — the "row without
  oversubscription" baseline.

Series are put on one grid: with ``align="time"`` by timestamp over the union of their
spans (gaps hold the last value; before its first and after its last sample a server idles
at ``p_idle_w``); with ``align="start"`` each series from its own first sample, cut to the
shortest (independent runs such as the four H100 logs). ``align="auto"`` (default) uses
``time`` when at least half of the series cover 90 % of the union span, else ``start``.
The trace must have a regular step (``frame.attrs["step"]``; load irregular logs with
``--step``).

Policy interface
----------------
``decide(spec, obs, forecast, now, memory)`` with the typed contract of
:mod:`policies.scenarios.power`. ``spec`` (a ``Spec``, fixed for the run): ``servers`` (N),
``server_ids`` (N names), ``budget_w``, ``p_max_w``, ``p_idle_w``, ``low_priority`` (N,)
bool, ``priority`` (N,) (derived: 0 low, 1 high; lower is capped first), ``step_s``,
``delay_s`` (the actuation delay that applies to this policy). ``obs`` (an
``Observation``, built each step): ``t``, ``history`` (t, N) read-only power observed per
server, ``caps_w`` (N,) the caps last commanded, ``row_w`` (t,) read-only observed row
power, and the derived ``row_power_w`` (row power of step ``t − 1``, after caps; 0 at
``t = 0``), ``server_power_w`` (N,) and ``capped`` (N,) bool. ``memory``: the policy's
previous ``Decision.state``. ``forecast``: for ``needs_forecast`` policies the replay forecaster's
Forecast over the observed per-server power history ``(t, N)`` (None at ``t = 0``, when
there is none); for ``reads_future`` policies a one-sample Forecast of the true demand of
step ``t`` (N indicators = server ids). ``Decision.action = {"caps": array (N,) of watts
(inf = no cap)}`` or ``{"caps": {server id or position: watts}}`` (servers not named are
uncapped). An invalid decision keeps the caps in force.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from common.errors import ConfigError, InputError
from models.forecast import Forecast
from policies.base import Policy
from policies.pipeline import step as step_policy
from policies.scenarios import power as contract
from traces.replay.base import (
    RunResult,
    Scenario,
    read_only,
    register_scenario,
)

J_PER_KWH = 3.6e6


@dataclass
class PowerData:
    """What :meth:`PowerScenario.prepare` extracts: demand per server on one grid.

    Attributes:
        demand_w: (T, N) demanded power of every server of the oversubscribed row.
        ts: (T,) step start times (seconds; relative to the first sample with align=start).
        server_ids: N names (``s000:<series>`` or ``s091:<series>+<offset steps>``).
        low_priority: (N,) bool.
        budget_servers: N0, the servers the budget is sized for.
        budget_w: the row's budget in watts.
        p_max_w: nameplate per server (W).
        p_idle_w: idle power per server (W), the lowest effective cap.
        step_s: seconds per step.
        resolved: resolved settings written beside the results.

    """

    demand_w: np.ndarray
    ts: np.ndarray
    server_ids: tuple[str, ...]
    low_priority: np.ndarray
    budget_servers: int
    budget_w: float
    p_max_w: float
    p_idle_w: float
    step_s: float
    resolved: dict[str, Any] = field(default_factory=dict)


def low_priority_mask(n: int, share: float) -> np.ndarray:
    """Evenly interleaved low-priority servers: ``floor((i+1)·s) > floor(i·s)``."""
    i = np.arange(n)
    return np.floor((i + 1) * share + 1e-9) > np.floor(i * share + 1e-9)


def build_frame(values: np.ndarray, *, metric: str = "cpu_util", step_s: float = 60.0,
                entities=None) -> pd.DataFrame:
    """Make a canonical frame of S series from a (T, S) array (tests, benches, examples)."""
    v = np.asarray(values, dtype=np.float64)
    n_t, n_s = v.shape
    ents = [f"m{i}" for i in range(n_s)] if entities is None else [str(e) for e in entities]
    frame = pd.DataFrame({
        "entity": np.repeat(np.array(ents, dtype=object), n_t), "metric": metric,
        "ts": np.tile(step_s * np.arange(n_t), n_s), "value": v.T.ravel(),
    })
    frame.attrs.update({"step": float(step_s), "kind": "server", "format": "arrays"})
    return frame


@register_scenario
class PowerScenario(Scenario):
    """Power capping of an oversubscribed row (see the module docstring)."""

    name: ClassVar[str] = "power"
    cost_figure: ClassVar[str] = "performance_lost"
    sla_figure: ClassVar[str] = "breach_steps"
    units: ClassVar[dict[str, str]] = {
        "servers": "servers", "breach_steps": "steps", "capped_fraction": "%",
        "performance_lost": "%", "budget_w": "W", "budget_servers": "servers",
        "breach_fraction": "%", "demand_breach_steps": "steps", "peak_row_power_w": "W",
        "mean_row_power_w": "W", "energy_demanded_kwh": "kWh", "energy_clipped_kwh": "kWh",
        "performance_lost_low": "%", "performance_lost_high": "%",
        "low_priority_servers": "servers", "steps": "steps", "step_s": "s",
        "fallback_steps": "steps", "invalid_steps": "steps",
        # timeline columns
        "demand_kw": "kW", "row_power_kw": "kW", "budget_kw": "kW", "caps_active": "servers",
    }
    defaults: ClassVar[dict[str, Any]] = {
        "metric": "auto",             # power_w, cpu_util, gpu_util or auto (first present)
        "p_idle_w": 100.0,            # W, idle power (linear model; lowest effective cap)
        "p_max_w": None,              # W, nameplate; None: 300 (cpu_util) / trace max (power_w)
        "budget_servers": None,       # servers the budget is sized for; None: series count
        "servers": None,              # servers in the row; None: oversubscription x above
        "oversubscription": 1.3,      # servers / budget_servers when servers is None
        "low_priority_share": 0.5,    # share of low-priority servers
        "delay_s": 40.0,              # s, cap actuation delay
        "align": "auto",              # time, start or auto
        "budget_w": None,             # W, the row's budget; None: budget_servers x p_max_w
        "low_priority": None,         # series names that are low priority; None: the share
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        c = self.config
        checks = [
            ("metric", c["metric"] in ("auto", "power_w", "cpu_util", "gpu_util")),
            ("p_idle_w", _num(c["p_idle_w"]) and c["p_idle_w"] >= 0),
            ("p_max_w", c["p_max_w"] is None or (_num(c["p_max_w"]) and c["p_max_w"] > 0)),
            ("budget_servers", c["budget_servers"] is None
             or (isinstance(c["budget_servers"], int) and c["budget_servers"] >= 1)),
            ("servers", c["servers"] is None
             or (isinstance(c["servers"], int) and c["servers"] >= 1)),
            ("oversubscription", _num(c["oversubscription"]) and c["oversubscription"] >= 1),
            ("low_priority_share", _num(c["low_priority_share"])
             and 0 <= c["low_priority_share"] <= 1),
            ("delay_s", _num(c["delay_s"]) and c["delay_s"] >= 0),
            ("align", c["align"] in ("auto", "time", "start")),
            ("budget_w", c["budget_w"] is None or (_num(c["budget_w"]) and c["budget_w"] > 0)),
            ("low_priority", c["low_priority"] is None
             or isinstance(c["low_priority"], list | tuple | set | frozenset)),
        ]
        for key, ok in checks:
            if not ok:
                raise ConfigError(f"power scenario: invalid option {key}={c[key]!r} "
                                  "(see the units and ranges in traces/replay/power.py)")
        if c["p_max_w"] is not None and c["p_max_w"] <= c["p_idle_w"]:
            raise ConfigError(f"power scenario: p_max_w ({c['p_max_w']}) must exceed "
                              f"p_idle_w ({c['p_idle_w']})")

    # ------------------------------------------------------------------ prepare
    def prepare(self, frame: pd.DataFrame) -> PowerData:
        """Build the oversubscribed row's demand (T, N) from a canonical frame.

        Raises:
            InputError: no usable metric, an irregular trace, or too few steps.
            ConfigError: ``servers`` below ``budget_servers`` or p_max_w below idle.

        """
        c = self.config
        src = str(frame.attrs.get("source", "trace"))
        have = set(frame["metric"].unique()) if len(frame) else set()
        metric = c["metric"]
        if metric == "auto":
            metric = next((m for m in ("power_w", "cpu_util", "gpu_util") if m in have),
                          "cpu_util")
        if metric not in have:
            raise InputError(
                f"the power scenario needs per-server 'power_w', 'cpu_util' or 'gpu_util' "
                f"rows; this trace has {sorted(have)}", where=src)
        rows = frame[frame["metric"] == metric]
        step = frame.attrs.get("step")
        if not step:
            raise InputError(
                "the trace has no regular step (irregular samples); load it with a step, "
                "e.g. `--step 1` (seconds), so every server is on one grid", where=src)
        step = float(step)
        series, names, align = _grid(rows, step, c["align"], src)  # (T, S)
        n_t, n_s = series.shape
        if n_t < 2:
            raise InputError(f"the aligned series have {n_t} step(s); need at least 2",
                             where=src)

        p_idle = float(c["p_idle_w"])
        outside = np.isnan(series)  # (T, S): the server idles outside its series' span
        if metric == "power_w":
            p_max = float(c["p_max_w"]) if c["p_max_w"] is not None else float(
                math.ceil(np.nanmax(series)))
            demand = np.where(outside, p_idle, series)
        else:  # cpu_util or gpu_util (percent) through the linear model
            p_max = float(c["p_max_w"]) if c["p_max_w"] is not None else 300.0
            u = np.clip(np.nan_to_num(series, nan=0.0) / 100.0, 0.0, 1.0)
            demand = p_idle + u * (p_max - p_idle)
        if p_max <= p_idle:
            raise ConfigError(f"power scenario: nameplate p_max_w={p_max:g} W is not above "
                              f"p_idle_w={p_idle:g} W; pass p_max_w")

        n0 = int(c["budget_servers"]) if c["budget_servers"] is not None else n_s
        budget_w = n0 * p_max
        if c["budget_w"] is not None:  # a declared row: its own budget (backtest)
            budget_w = float(c["budget_w"])
            n0 = max(1, min(n_s, int(budget_w // p_max)))  # servers the budget holds at peak
        n = int(c["servers"]) if c["servers"] is not None else int(
            round(c["oversubscription"] * n0))
        if n < n0:
            raise ConfigError(f"power scenario: servers ({n}) must be >= budget_servers "
                              f"({n0}); the row is oversubscribed, never undersized")
        reps = math.ceil(n / n_s)
        shift = n_t // reps
        cols, ids = [], []
        for i in range(n):
            s, k = i % n_s, i // n_s
            cols.append(np.roll(demand[:, s], -k * shift))
            ids.append(f"s{i:03d}:{names[s]}" + (f"+{k * shift}" if k else ""))
        d = np.stack(cols, axis=1)  # (T, N)
        if c["low_priority"] is not None:
            named = {str(x) for x in c["low_priority"]}
            low = np.array([names[i % n_s] in named for i in range(n)], dtype=bool)
        else:
            low = low_priority_mask(n, float(c["low_priority_share"]))
        t0 = 0.0 if align == "start" else float(np.min(rows["ts"]))
        return PowerData(
            demand_w=d, ts=t0 + step * np.arange(n_t), server_ids=tuple(ids),
            low_priority=low, budget_servers=n0, budget_w=budget_w, p_max_w=p_max,
            p_idle_w=p_idle, step_s=step,
            resolved={"metric": metric, "align": align, "p_max_w": p_max, "p_idle_w": p_idle,
                      "idle_outside_span_steps": int(outside.sum()),
                      "budget_servers": n0, "servers": n, "budget_w": budget_w,
                      "series": n_s, "steps": n_t, "step_s": step,
                      "cycle_offset_steps": shift if reps > 1 else 0,
                      "low_priority_servers": int(low.sum())})

    # ---------------------------------------------------------------------- run
    def forecast_series(self, data: PowerData) -> list[Any]:
        """Return the series a forecaster of this scenario is fed: each server's power."""
        from models.data import Series

        return [Series(data.demand_w[:, i], data.ts, ("demand",), sid, data.step_s)
                for i, sid in enumerate(data.server_ids)]

    def forecast_horizon(self, policy: Policy, data: PowerData) -> int:
        """Return the steps a forecast for ``policy`` must cover.

        As the decision path asks (:func:`policies.scenarios.power.horizon`): the policy's
        window, else its ``horizon`` parameter.
        """
        future = bool(getattr(policy, "reads_future", False))
        spec = contract.Spec(server_ids=data.server_ids, budget_w=data.budget_w,
                             p_max_w=data.p_max_w, p_idle_w=data.p_idle_w,
                             low_priority=data.low_priority, step_s=data.step_s,
                             delay_s=0.0 if future else float(self.config["delay_s"]))
        return contract.horizon(spec, policy)

    def run(self, policy: Policy, data: PowerData, *, seed: int = 0, timeline: bool = False,
            forecaster: Any = None) -> RunResult:
        """Replay ``policy`` over the row; deterministic (the model has no randomness)."""
        nameplate = bool(getattr(policy, "nameplate_row", False))
        n = data.budget_servers if nameplate else data.demand_w.shape[1]
        d = data.demand_w[:, :n]  # (T, N)
        low = data.low_priority[:n]
        ids = data.server_ids[:n]
        n_t = d.shape[0]
        dt = data.step_s
        future = bool(getattr(policy, "reads_future", False))
        delay = 0.0 if future else float(self.config["delay_s"])
        q = int(delay // dt)
        r = delay - q * dt
        frac_a = r / dt  # share of each step still under the older caps
        spec = contract.Spec(server_ids=ids, budget_w=data.budget_w, p_max_w=data.p_max_w,
                             p_idle_w=data.p_idle_w, low_priority=read_only(np.asarray(low)),
                             step_s=dt, delay_s=delay)
        fc = forecaster if getattr(policy, "needs_forecast", False) else None

        caps = np.full((n_t, n), np.inf)  # (T, N) caps decided before each step
        obs = np.zeros((n_t, n))  # (T, N) drawn power, time-averaged over the step
        row_obs = np.zeros(n_t)
        row_peak = np.zeros(n_t)
        breach = np.zeros(n_t, dtype=bool)
        capped = np.zeros(n_t)  # server-steps under a cap in force
        # policies get read-only views: decide must not be able to edit the replay's arrays
        row_ro, obs_ro = read_only(row_obs), read_only(obs)
        memory: Any = None
        current = np.full(n, np.inf)
        fallback_steps = invalid_steps = 0
        floor = data.p_idle_w
        for t in range(n_t):
            now = float(data.ts[t])
            truth = None
            if future:
                truth = Forecast(samples=d[t][None, None, :].copy(), start=now, step=dt,
                                 indicators=ids, model="truth")
            seen = contract.Observation(t=t, history=obs_ro[:t], caps_w=current, start_s=now,
                                        current=contract.Desired(current), truth=truth,
                                        row_w=row_ro[:t])
            try:
                dec, desired, memory = step_policy(policy, fc, spec, seen, memory, now)
            except ValueError as exc:
                raise ValueError(f"policy {policy.name!r} at step {t}: {exc}") from exc
            fallback_steps += bool(dec.fallback)
            if not dec.valid:
                invalid_steps += 1
            current = desired.caps
            caps[t] = current

            cap_b = caps[t - q] if t - q >= 0 else np.full(n, np.inf)
            cap_b = np.maximum(cap_b, floor)
            p_b = np.minimum(d[t], cap_b)
            if frac_a > 0:
                cap_a = np.maximum(caps[t - q - 1] if t - q - 1 >= 0 else np.full(n, np.inf),
                                   floor)
                p_a = np.minimum(d[t], cap_a)
                obs[t] = p_b + frac_a * (p_a - p_b)  # exact when both segments agree
                seg_rows = (p_a.sum(), p_b.sum())
                capped[t] = frac_a * np.isfinite(cap_a).sum() + (1 - frac_a) * np.isfinite(
                    cap_b).sum()
            else:
                obs[t] = p_b
                seg_rows = (p_b.sum(),)
                capped[t] = np.isfinite(cap_b).sum()
            row_obs[t] = obs[t].sum()
            row_peak[t] = max(seg_rows)
            breach[t] = row_peak[t] > data.budget_w * (1 + 1e-12)
        return _result(data, d, low, obs, row_obs, row_peak, breach, capped, caps,
                       fallback_steps, invalid_steps, timeline)


def _num(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _grid(rows: pd.DataFrame, step: float, align: str, src: str
          ) -> tuple[np.ndarray, list[str], str]:
    """Put every series on one step grid; returns (T, S) values, names and the align used."""
    ents = sorted(rows["entity"].astype(str).unique())
    per: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for e, g in rows.groupby(rows["entity"].astype(str), sort=True):
        ts = g["ts"].to_numpy(dtype=np.float64)
        v = g["value"].to_numpy(dtype=np.float64)
        o = np.argsort(ts, kind="stable")
        per[e] = (ts[o], v[o])
    starts = np.array([per[e][0][0] for e in ents])
    ends = np.array([per[e][0][-1] for e in ents])
    if align == "auto":
        # one clock when most series cover (nearly) the whole span, e.g. a month of VMs of
        # which a few start late; separate runs (the H100 logs) each cover a small part
        union = ends.max() - starts.min()
        covering = (ends - starts) >= 0.9 * union
        align = "time" if union <= 0 or covering.mean() >= 0.5 else "start"
    cols = []
    if align == "time":
        t0, t1 = starts.min(), ends.max()
        grid = t0 + step * np.arange(int(np.floor((t1 - t0) / step + 1e-9)) + 1)
        for e in ents:
            v = _hold(per[e][0], per[e][1], grid)
            # before its first or after its last sample a server runs no workload
            v[(grid < per[e][0][0] - 1e-9) | (grid > per[e][0][-1] + 1e-9)] = np.nan
            cols.append(v)
    else:
        n_t = int(np.floor((ends - starts).min() / step + 1e-9)) + 1
        for e, s0 in zip(ents, starts, strict=True):
            cols.append(_hold(per[e][0], per[e][1], s0 + step * np.arange(n_t)))
    out = np.stack(cols, axis=1)  # (T, S); NaN = outside the series' span
    if np.isinf(out).any():
        raise InputError("infinite values in the server series", where=src)
    return out, ents, align


def _hold(ts: np.ndarray, v: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Value at each grid time: the last sample at or before it (the first one before)."""
    i = np.searchsorted(ts, grid + 1e-9, side="right") - 1
    return v[np.clip(i, 0, len(v) - 1)]


def _result(data: PowerData, d: np.ndarray, low: np.ndarray, obs: np.ndarray,
            row_obs: np.ndarray, row_peak: np.ndarray, breach: np.ndarray,
            capped: np.ndarray, caps: np.ndarray, fallback_steps: int, invalid_steps: int,
            timeline: bool) -> RunResult:
    dt = data.step_s
    n_t, n = d.shape
    demanded = d.sum() * dt
    # float noise of the segment average must not show as negative clipping
    clipped_srv = np.maximum((d - obs).sum(axis=0) * dt, 0.0)  # (N,) J
    clipped = clipped_srv.sum()
    dem_srv = d.sum(axis=0) * dt

    def _share(mask: np.ndarray) -> float:
        tot = dem_srv[mask].sum()
        return float(clipped_srv[mask].sum() / tot) + 0.0 if tot > 0 else 0.0

    row_demand = d.sum(axis=1)
    totals = {
        "servers": float(n),
        "breach_steps": float(breach.sum()),
        "capped_fraction": float(capped.sum() / (n_t * n)),
        "performance_lost": float(clipped / demanded) + 0.0 if demanded > 0 else 0.0,
        "budget_w": float(data.budget_w),
        "budget_servers": float(data.budget_servers),
        "breach_fraction": float(breach.mean()),
        "demand_breach_steps": float((row_demand > data.budget_w * (1 + 1e-12)).sum()),
        "peak_row_power_w": float(row_peak.max()),
        "mean_row_power_w": float(row_obs.mean()),
        "energy_demanded_kwh": float(demanded / J_PER_KWH),
        "energy_clipped_kwh": float(clipped / J_PER_KWH) + 0.0,
        "performance_lost_low": _share(low),
        "performance_lost_high": _share(~low),
        "low_priority_servers": float(low.sum()),
        "steps": float(n_t),
        "step_s": float(dt),
        "fallback_steps": float(fallback_steps),
        "invalid_steps": float(invalid_steps),
    }
    tl = None
    if timeline:
        tl = pd.DataFrame({
            "t_s": data.ts,
            "demand_kw": row_demand / 1000.0,  # demand first (the plots draw it in black)
            "row_power_kw": row_obs / 1000.0,
            "budget_kw": np.full(n_t, data.budget_w / 1000.0),
            "caps_active": capped,
        })
    # breach: (T,) bool, the steps counted in breach_steps (bench/oversub.py --explain reads it)
    return RunResult(totals=totals, timeline=tl,
                     extra={"entity_steps": int(n_t * n), "breach": breach.copy()})
