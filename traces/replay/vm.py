"""The ``vm`` replay scenario: horizontal scaling of one service.

Reference model (documented in docs/replay.md, section *The vm scenario*):

* **Demand** ``d_j`` (CPU cores, requests per second...) is piecewise constant: sample
  ``j`` holds over ``[j*step, (j+1)*step)`` from the trace start. It comes from the metric
  ``metric`` (``auto``: ``cpu_cores``, else ``requests``, else ``cpu_util`` x cores / 100
  with cores from ``frame.attrs["static"]`` (``cpu_cores``/``cores``/``cpu_num``) or 1,
  else ``invocations``, else ``concurrency``); counts "per step" become rates per second.
  Samples are binned onto a regular grid of the trace's step (or ``resample_s``: bin
  means when coarser, linear interpolation between an entity's own sample times when
  finer, held after its last); gaps inside an entity's span hold its last value, and
  outside its span an entity contributes nothing.
* **Entities**: ``entities="aggregate"`` (default) sums every entity into one service
  demand; ``"separate"`` runs each entity as its own service and sums the totals
  (rates are weighted by time and demand).
* **Replicas**: one replica serves ``capacity`` demand units (``auto``: peak demand / 10,
  per service). The run starts with ``initial_replicas`` ready (``auto``:
  ``ceil(d_0 / capacity)``), within ``[min_replicas, max_replicas]``.
* **Decisions** every ``sync_s`` seconds from the start (``None``: the policy's own
  ``sync_s`` parameter, else 15 s). The policy sees only completed samples (those with
  ``(j+1)*step <= now``) and the ready / requested counts; policies that declare
  ``reads_future`` (static-peak, oracle) also get the whole series. They observe the
  offered demand, also above the ready capacity (as a request-rate or queue metric
  reads). An invalid decision keeps the current count.
* **Scale-up**: a requested replica costs from the request and is ready ``boot_s``
  seconds later. **Scale-down** is immediate: booting replicas go first (newest first),
  then ready ones.
* **Figures** (time integrals over the piecewise-constant signals, which equal the
  per-step definitions when decisions and boots fall on the step grid):
  ``replica_seconds`` = integral of requested replicas (cost); ``violation_rate`` = share
  of time with ``d > ready * capacity``; ``unserved_fraction`` = integral of
  ``max(d - ready * capacity, 0)`` / integral of ``d``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from common.errors import InputError
from policies.base import Policy
from policies.pipeline import step as step_policy
from policies.scenarios import vm as vm_contract
from traces.replay.base import RunResult, Scenario, register_scenario

_METRIC_ORDER = ("cpu_cores", "requests", "cpu_util", "invocations", "concurrency")
_CORE_KEYS = ("cpu_cores", "cores", "cpu_num")


@dataclass
class VmService:
    """One simulated service: its demand series on a regular grid."""

    name: str
    demand: np.ndarray  # (N,) demand units per sample, read only
    capacity: float  # demand units one replica serves
    start_s: float  # time of sample 0 (trace seconds)
    step_s: float  # seconds per sample


@dataclass
class VmData:
    """What :meth:`VmScenario.prepare` extracts from a frame."""

    services: list[VmService]
    resolved: dict[str, Any] = field(default_factory=dict)


def _infer_step(ts: np.ndarray, codes: np.ndarray) -> float:
    """Median positive gap between consecutive samples of the same entity (seconds)."""
    order = np.lexsort((ts, codes))
    t, c = ts[order], codes[order]
    gaps = np.diff(t)[np.diff(c) == 0]
    gaps = gaps[gaps > 0]
    if gaps.size == 0:
        return 1.0
    return float(np.median(gaps))


def _grid(ts: np.ndarray, vals: np.ndarray, codes: np.ndarray, n_ent: int, t0: float,
          step: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Bin samples to ``(n_ent, n)`` means on the grid; hold values inside each span.

    Returns the matrix and a mask of where each entity has data (its first..last bin).
    """
    idx = np.floor((ts - t0) / step + 1e-9).astype(np.int64)
    idx = np.clip(idx, 0, n - 1)
    flat = codes.astype(np.int64) * n + idx
    sums = np.bincount(flat, weights=vals, minlength=n_ent * n).reshape(n_ent, n)
    cnt = np.bincount(flat, minlength=n_ent * n).reshape(n_ent, n)
    has = cnt > 0
    mean = np.where(has, sums / np.maximum(cnt, 1), np.nan)
    # forward fill inside each entity's span (hold the last value over gaps)
    pos = np.where(has, np.arange(n)[None, :], -1)
    np.maximum.accumulate(pos, axis=1, out=pos)
    filled = np.take_along_axis(mean, np.maximum(pos, 0), axis=1)
    first = np.argmax(has, axis=1)
    last = n - 1 - np.argmax(has[:, ::-1], axis=1)
    cols = np.arange(n)[None, :]
    span = (cols >= first[:, None]) & (cols <= last[:, None])
    filled = np.where(span, filled, 0.0)
    return filled, span


@register_scenario
class VmScenario(Scenario):
    """Horizontal scaling of one service against a demand series (see module doc)."""

    name = "vm"
    cost_figure = "replica_seconds"
    sla_figure = "violation_rate"
    summary_figures = ("replica_seconds", "violation_rate", "unserved_fraction")
    units = {
        "replica_seconds": "replica·s", "violation_rate": "%", "unserved_fraction": "%",
        "mean_replicas": "replicas", "peak_replicas": "replicas",
        "idle_replica_seconds": "replica·s", "decisions": "decisions",
        "invalid_decisions": "decisions", "scale_ups": "scale-ups",
        "scale_downs": "scale-downs",
        # timeline columns: the demand's own units (units_for), "demand units" if unknown
        "demand": "demand units", "capacity_ready": "demand units",
        "capacity_requested": "demand units",
    }
    action_keys = ("replicas",)
    defaults = {
        "metric": "auto",  # frame metric the demand comes from
        "capacity": "auto",  # demand units per replica; auto = peak demand / auto_peak_replicas
        "auto_peak_replicas": 10,  # replicas the peak needs when capacity is auto
        "boot_s": 60.0,  # seconds from request to ready
        "sync_s": None,  # decision period, seconds; None = the policy's own (else 15)
        "min_replicas": 1,
        "max_replicas": 1000,
        "initial_replicas": "auto",  # ready at start; auto = ceil(d_0 / capacity)
        "resample_s": None,  # grid step, seconds; None = the trace's step
        "entities": "aggregate",  # aggregate | separate
        "timeline_points": 2000,  # at most this many timeline rows (plots)
    }

    def __init__(self, **config: Any) -> None:
        super().__init__(**config)
        #: show a per-service progress bar in separate mode (set by the replay driver)
        self.progress = False
        c = self.config
        checks = [
            ("entities", lambda: c["entities"] in ("aggregate", "separate"),
             "aggregate or separate"),
            ("capacity", lambda: c["capacity"] == "auto" or float(c["capacity"]) > 0,
             "auto or > 0 (demand units per replica)"),
            ("boot_s", lambda: float(c["boot_s"]) >= 0, ">= 0 seconds"),
            ("sync_s", lambda: c["sync_s"] is None or float(c["sync_s"]) > 0,
             "None or > 0 seconds"),
            ("min_replicas", lambda: 0 <= int(c["min_replicas"]) <= int(c["max_replicas"]),
             "an integer with 0 <= min_replicas <= max_replicas"),
            ("max_replicas", lambda: int(c["max_replicas"]) >= 1, "an integer >= 1"),
            ("resample_s", lambda: c["resample_s"] is None or float(c["resample_s"]) > 0,
             "None or > 0 seconds"),
            ("initial_replicas", lambda: c["initial_replicas"] == "auto"
             or int(c["initial_replicas"]) >= 0, "auto or an integer >= 0"),
            ("auto_peak_replicas", lambda: float(c["auto_peak_replicas"]) > 0, "> 0"),
            ("timeline_points", lambda: int(c["timeline_points"]) >= 10, "an integer >= 10"),
        ]
        for key, check, want in checks:
            try:
                ok = bool(check())
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"vm option {key} must be {want}, got {c[key]!r}")

    # ------------------------------------------------------------------ prepare
    def units_for(self, data: VmData) -> dict[str, str]:
        """:attr:`units`, with the timeline in the demand's own units (``cores``...)."""
        out = dict(self.units)
        own = str((data.resolved or {}).get("units") or "").split(" (")[0].strip()
        if own:
            out.update(demand=own, capacity_ready=own, capacity_requested=own)
        return out

    def _demand_rows(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, str, str]:
        metrics = set(frame["metric"].unique())
        want = self.config["metric"]
        if want == "auto":
            chosen = next((m for m in _METRIC_ORDER if m in metrics), None)
            if chosen is None:
                raise InputError(
                    f"no demand metric for the vm scenario; the trace has {sorted(metrics)}, "
                    f"need one of {list(_METRIC_ORDER)} or --option metric=NAME"
                )
        elif want not in metrics:
            raise InputError(
                f"metric {want!r} not in the trace (it has {sorted(metrics)})",
                where="--option metric",
            )
        else:
            chosen = want
        rows = frame[frame["metric"] == chosen]
        units = (frame.attrs.get("units") or {}).get(chosen, "")
        if chosen == "cpu_util":
            static = frame.attrs.get("static") or {}
            cores = rows["entity"].map(
                lambda e: next(
                    (float(static[e][k]) for k in _CORE_KEYS if k in static.get(e, {})), 1.0
                )
            )
            rows = rows.assign(value=rows["value"].to_numpy() / 100.0 * cores.to_numpy())
            known = any(k in static.get(e, {}) for e in rows["entity"].unique()
                        for k in _CORE_KEYS)
            units = ("cores (cpu_util x cores / 100)" if known
                     else "machines (cpu_util / 100; the trace has no core counts)")
        return rows, chosen, units

    def prepare(self, frame: pd.DataFrame) -> VmData:
        """Turn a canonical frame into the services' demand series."""
        if frame is None or len(frame) == 0:
            raise InputError("the trace has no rows")
        rows, metric, units = self._demand_rows(frame)
        if len(rows) == 0:
            raise InputError(f"the trace has no {metric!r} samples")
        codes, names = pd.factorize(rows["entity"], sort=True)
        ts = rows["ts"].to_numpy(np.float64)
        vals = rows["value"].to_numpy(np.float64)
        if not np.all(np.isfinite(vals)) or not np.all(np.isfinite(ts)):
            raise InputError(f"the trace's {metric!r} samples contain NaN or Inf")
        if np.any(vals < 0):
            bad = rows.iloc[int(np.argmax(vals < 0))]
            raise InputError(
                f"negative demand {bad['value']} for entity {bad['entity']!r} at ts {bad['ts']}"
            )
        native = frame.attrs.get("step") or _infer_step(ts, codes)
        native = float(native)
        if "per step" in units:  # counts per step -> a rate, so resampling keeps meaning
            vals = vals / native
            units = units.replace("per step", "per second")
        target = self.config["resample_s"]
        step = native if target is None else float(target)
        t0 = float(ts.min())
        bin_step = step if step >= native else native
        n_bins = int(math.floor((float(ts.max()) - t0) / bin_step + 1e-9)) + 1
        n_ent = len(names)
        mat, span = _grid(ts, vals, codes, n_ent, t0, bin_step, n_bins)  # (E, n)
        up = step < native
        n_fine = int(math.floor(n_bins * native / step + 1e-9)) if up else n_bins
        fine_t = np.arange(n_fine) * step
        coarse_t = np.arange(n_bins) * native

        def entity(e: int) -> tuple[int, np.ndarray]:
            """Entity ``e`` within its own span: (first index on the grid, values)."""
            cols = np.flatnonzero(span[e])
            a, b = int(cols[0]), int(cols[-1]) + 1  # coarse bins holding its samples
            if not up:
                return a, mat[e, a:b]
            # linear between its sample times, held after its last one (never towards
            # the zeros outside its span)
            fa = int(math.ceil(a * native / step - 1e-9))
            fb = int(math.ceil(b * native / step - 1e-9))
            return fa, np.interp(fine_t[fa:fb], coarse_t[a:b], mat[e, a:b])

        if self.config["entities"] == "aggregate":
            total = np.zeros(n_fine)
            for e in range(n_ent):
                a, values = entity(e)
                total[a:a + len(values)] += values
            demands = [("aggregate", total, t0)]
        else:
            demands = []
            for e in range(n_ent):
                a, values = entity(e)
                demands.append((str(names[e]), values, t0 + a * step))
        services = []
        capacities = {}
        for name, d, start in demands:
            d = np.ascontiguousarray(d, dtype=np.float64)
            d.setflags(write=False)
            if self.config["capacity"] == "auto":
                peak = float(d.max())
                cap = peak / float(self.config["auto_peak_replicas"]) if peak > 0 else 1.0
            else:
                cap = float(self.config["capacity"])
            capacities[name] = cap
            services.append(VmService(name, d, cap, start, step))
        resolved = {
            "metric": metric,
            "units": units,
            "step_s": step,
            "trace_step_s": native,
            "entities_in_trace": n_ent,
            "services": len(services),
            "steps": int(sum(len(s.demand) for s in services)),
        }
        if len(capacities) == 1:
            resolved["capacity"] = next(iter(capacities.values()))
        else:
            caps = np.array(list(capacities.values()))
            resolved["capacity"] = {"min": float(caps.min()), "max": float(caps.max()),
                                    "mean": float(caps.mean())}
        return VmData(services, resolved)

    # ------------------------------------------------------------------ run
    def sync_for(self, policy: Policy) -> float:
        """Decision period for ``policy``: the option, else the policy's own, else 15 s."""
        if self.config["sync_s"] is not None:
            return float(self.config["sync_s"])
        return float(policy.params.get("sync_s", 15.0))

    def forecast_series(self, data: VmData) -> list[Any]:
        """Return the series a forecaster of this scenario is fed: each service's demand."""
        from models.data import Series

        return [Series(svc.demand[:, None], svc.start_s + svc.step_s * np.arange(len(svc.demand)),
                       ("demand",), svc.name, svc.step_s) for svc in data.services]

    def forecast_horizon(self, policy: Policy, data: VmData) -> int:
        """Return the steps a forecast for ``policy`` must cover.

        The sample in progress, then boot plus decision period
        (:func:`policies.scenarios.vm.horizon`).
        """
        step = data.services[0].step_s if data.services else 1.0
        return 1 + max(1, math.ceil((float(self.config["boot_s"]) + self.sync_for(policy))
                                    / step))

    def run(self, policy: Policy, data: VmData, *, seed: int = 0, timeline: bool = False,
            forecaster: Any = None) -> RunResult:
        """Simulate ``policy`` over every service; totals summed over services."""
        acc = {"replica_seconds": 0.0, "violation_s": 0.0, "unserved": 0.0, "demand": 0.0,
               "served": 0.0, "duration_s": 0.0, "decisions": 0, "invalid_decisions": 0,
               "scale_ups": 0, "scale_downs": 0, "peak_replicas": 0, "steps": 0}
        tl_parts = []
        services = data.services
        if self.progress and len(services) > 1:  # separate mode: one service at a time
            from tqdm import tqdm

            services = tqdm(services, desc=policy.name, unit="service", leave=False)
        for svc in services:
            out = self._run_service(policy, svc, timeline, forecaster)
            for k in acc:
                if k == "peak_replicas":
                    acc[k] = max(acc[k], out[k])
                else:
                    acc[k] += out[k]
            if timeline:
                tl_parts.append(out["timeline"])
        dur = acc["duration_s"]
        totals = {
            "replica_seconds": acc["replica_seconds"],
            "violation_rate": acc["violation_s"] / dur if dur > 0 else 0.0,
            "unserved_fraction": acc["unserved"] / acc["demand"] if acc["demand"] > 0 else 0.0,
            # per service: replica-seconds over service-seconds
            "mean_replicas": acc["replica_seconds"] / dur if dur > 0 else 0.0,
            "peak_replicas": float(acc["peak_replicas"]),
            # requested replica-seconds that served no demand (booting or spare)
            "idle_replica_seconds": max(0.0, acc["replica_seconds"] - acc["served"]),
            "decisions": float(acc["decisions"]),
            "invalid_decisions": float(acc["invalid_decisions"]),
            "scale_ups": float(acc["scale_ups"]),
            "scale_downs": float(acc["scale_downs"]),
        }
        tl = None
        if timeline and tl_parts:
            tl = self._merge_timelines(tl_parts, data)
        return RunResult(totals, tl, extra={"entity_steps": acc["steps"],
                                           "sync_s": self.sync_for(policy)})

    def _merge_timelines(self, parts: list[pd.DataFrame], data: VmData) -> pd.DataFrame:
        if len(parts) == 1:
            tl = parts[0]
        else:
            tl = pd.concat(parts).groupby("t_s", as_index=False).sum().sort_values("t_s")
        n = int(self.config["timeline_points"])
        if len(tl) > n:  # keep the max of each block so short violations stay visible
            block = math.ceil(len(tl) / n)
            g = np.arange(len(tl)) // block
            tl = tl.groupby(g).agg({"t_s": "first", "demand": "max", "capacity_ready": "min",
                                    "capacity_requested": "max"})
        return tl.reset_index(drop=True)

    def _run_service(self, policy: Policy, svc: VmService, timeline: bool,
                     forecaster: Any) -> dict[str, Any]:
        c = self.config
        d = svc.demand
        n = len(d)
        step = svc.step_s
        cap = svc.capacity
        end = n * step
        boot = float(c["boot_s"])
        sync = self.sync_for(policy)
        lo, hi = int(c["min_replicas"]), int(c["max_replicas"])
        if c["initial_replicas"] == "auto":
            init = math.ceil(float(d[0]) / cap - 1e-9)
        else:
            init = int(c["initial_replicas"])
        init = min(hi, max(lo, init))
        cs = np.concatenate(([0.0], np.cumsum(d)))
        cs.setflags(write=False)
        future = bool(getattr(policy, "reads_future", False))
        fc = forecaster if getattr(policy, "needs_forecast", False) else None
        spec = vm_contract.Spec(capacity=cap, min_replicas=lo, max_replicas=hi, step_s=step,
                                boot_s=boot, sync_s=sync)
        Observation, Desired = vm_contract.Observation, vm_contract.Desired  # noqa: N806
        start = svc.start_s

        ready = init
        booting: deque[float] = deque()  # ready times (relative s), FIFO
        r_t = [0.0]  # ready-count change times (relative s)
        r_v = [init]
        p_t = [0.0]  # requested-count change times
        p_v = [init]
        memory: Any = None
        decisions = invalid = ups = downs = 0
        peak = init
        k = 0
        t = 0.0
        while t < end:
            while booting and booting[0] <= t:
                r_t.append(booting.popleft())
                r_v.append(1)
                ready += 1
            requested = ready + len(booting)
            n_obs = min(n, int(t / step + 1e-9))
            obs = Observation(d[:n_obs], start, ready, requested, Desired(requested),
                              cs[: n_obs + 1], d if future else None)
            dec, desired, memory = step_policy(policy, fc, spec, obs, memory, start + t)
            decisions += 1
            if dec.valid:
                want = desired.replicas
                if want > requested:
                    add = want - requested
                    ups += 1
                    p_t.append(t)
                    p_v.append(add)
                    if boot > 0:
                        booting.extend([t + boot] * add)
                    else:
                        ready += add
                        r_t.append(t)
                        r_v.append(add)
                    if want > peak:
                        peak = want
                elif want < requested:
                    cut = requested - want
                    downs += 1
                    p_t.append(t)
                    p_v.append(-cut)
                    while cut and booting:
                        booting.pop()
                        cut -= 1
                    if cut:
                        ready -= cut
                        r_t.append(t)
                        r_v.append(-cut)
            else:
                invalid += 1
            k += 1
            t = k * sync
        while booting and booting[0] < end:
            r_t.append(booting.popleft())
            r_v.append(1)
        out = self._figures(d, step, cap, np.array(r_t), np.array(r_v, dtype=np.float64),
                            np.array(p_t), np.array(p_v, dtype=np.float64), timeline, start)
        out.update(decisions=decisions, invalid_decisions=invalid, scale_ups=ups,
                   scale_downs=downs, peak_replicas=peak, steps=n, duration_s=end)
        return out

    @staticmethod
    def _figures(d: np.ndarray, step: float, cap: float, r_t: np.ndarray, r_v: np.ndarray,
                 p_t: np.ndarray, p_v: np.ndarray, timeline: bool,
                 start: float) -> dict[str, Any]:
        """Integrate the piecewise-constant demand, ready and requested signals."""
        n = len(d)
        end = n * step
        bounds = np.arange(n + 1, dtype=np.float64) * step  # (n+1,)
        ev = np.concatenate((r_t, p_t))
        ev = ev[(ev > 0) & (ev < end)]
        pos = ev / step
        if np.all(np.abs(pos - np.rint(pos)) < 1e-9):
            # every change falls on a step boundary (the usual case): one segment per step
            seg, dur, dseg = bounds[:-1], np.full(n, step), d

            def level(times: np.ndarray, deltas: np.ndarray) -> np.ndarray:
                idx = np.minimum(np.rint(times / step).astype(np.int64), n)
                return np.cumsum(np.bincount(idx, weights=deltas, minlength=n + 1))[:n]
        else:
            cuts = np.union1d(bounds, ev)  # (S+1,) step boundaries and change times
            seg = cuts[:-1]
            dur = np.diff(cuts)
            di = np.minimum(np.searchsorted(bounds, seg, side="right") - 1, n - 1)
            dseg = d[di]

            def level(times: np.ndarray, deltas: np.ndarray) -> np.ndarray:
                order = np.argsort(times, kind="stable")
                cum = np.cumsum(deltas[order])
                return cum[np.searchsorted(times[order], seg, side="right") - 1]

        ready = level(r_t, r_v)
        prov = level(p_t, p_v)
        supply = ready * cap
        # a shortfall within rounding (d = 10 x (peak / 10)) is not a miss
        viol = dseg > supply * (1.0 + 1e-9) + 1e-12
        short = np.where(viol, dseg - supply, 0.0)
        # sums of products, not np.dot: BLAS threads cost more than they save here
        out = {
            "replica_seconds": float((prov * dur).sum()),
            "violation_s": float(dur[viol].sum()),
            "unserved": float((short * dur).sum()),
            "demand": float((dseg * dur).sum()),
            "served": float((np.minimum(dseg, supply) * dur).sum()) / cap,
        }
        if timeline:
            # per sample: the lowest ready and highest requested capacity (demand units)
            if len(seg) == n:
                lo_supply, hi_prov = supply, prov
            else:
                first = np.searchsorted(seg, bounds[:-1], side="left")
                lo_supply = np.minimum.reduceat(supply, first)
                hi_prov = np.maximum.reduceat(prov, first)
            out["timeline"] = pd.DataFrame({
                "t_s": bounds[:-1] + start, "demand": d,
                "capacity_ready": lo_supply, "capacity_requested": hi_prov * cap,
            })
        return out
