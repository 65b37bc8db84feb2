"""Fast online probabilistic forecasters that feed ``bayes`` in replay (and the daemon's fallback).

They follow the replay forecaster hook (see :mod:`traces.replay.base`)::

    forecaster(history, now, step, horizon) -> Forecast

where ``history`` holds only data up to ``now`` (array ``(T,)``/``(T, M)`` or a DataFrame
whose columns name the indicators), ``step`` is the seconds between rows and ``horizon``
the number of future steps wanted. Forecast step ``h`` is the ``h``-th sample after the
history; its interval starts at ``Forecast.start + h * step`` with ``start = now`` (the
sample in progress at ``now`` is step 0, as in the replay's piecewise-constant demand).
Each call is cheap (vectorised numpy, no fitting loop) so a replay makes thousands of
decisions per second.

* :class:`GrowthBootstrapForecaster` — joint sample paths from the empirical distribution of
  past *growth over the horizon*: every past origin ``t`` gives a trajectory of increments
  ``z[t+h] - z[t]`` (``z`` the series in log or linear space); S origins are resampled,
  preferring origins at the same time of day, and their increments are added to the current
  level. One origin per path for all series keeps their joint behaviour (servers of a power
  row rise together). Used for ``vm`` (log space) and ``power`` (linear space).
* :class:`IntermittentCountForecaster` — per-entity counts for sparse and dense series
  (serverless functions): a hurdle model. Whether the next step is active comes from a
  Bayesian hazard of the idle time — ``P(active | idle for a steps)`` from the entity's own
  histogram of gaps between active steps, shrunk towards the hazard pooled over all
  entities — and the count when active from a Gamma–Poisson (negative binomial) posterior
  over recent active steps with exponential forgetting. Samples are stratified in the first
  step (sample ``s`` sits at quantile ``(s + 0.5) / S``) so rare arrivals are resolved with
  few samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.forecast import Forecast


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Return a generator's state as JSON-safe plain data (128-bit integers as strings)."""
    st = rng.bit_generator.state
    return {"bit_generator": st["bit_generator"],
            "state": {k: str(v) for k, v in st["state"].items()},
            "has_uint32": int(st.get("has_uint32", 0)), "uinteger": int(st.get("uinteger", 0))}


def _set_rng_state(rng: np.random.Generator, saved: dict[str, Any]) -> None:
    """Inverse of :func:`_rng_state`."""
    rng.bit_generator.state = {
        "bit_generator": saved["bit_generator"],
        "state": {k: int(v) for k, v in saved["state"].items()},
        "has_uint32": int(saved["has_uint32"]), "uinteger": int(saved["uinteger"]),
    }


def _names(history: Any) -> tuple[str, ...]:
    """Return the indicator names of a history without converting its values."""
    cols = getattr(history, "columns", None)
    if cols is not None:
        return tuple(str(c) for c in cols)
    shape = np.shape(history)
    m = 1 if len(shape) == 1 else shape[1]
    return ("demand",) if m == 1 else tuple(str(j) for j in range(m))


def _row(history: Any, i: int) -> np.ndarray:
    """Row ``i`` of a history as a float vector (NaN/Inf read as 0, like the forecasters)."""
    r = history.iloc[i].to_numpy() if hasattr(history, "iloc") else history[i]
    return np.nan_to_num(np.atleast_1d(np.asarray(r, dtype=np.float64)), nan=0.0,
                         posinf=0.0, neginf=0.0)


def _as_matrix(history: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    """History as a float ``(T, M)`` matrix plus indicator names."""
    cols = getattr(history, "columns", None)
    if cols is not None:  # a DataFrame
        names = tuple(str(c) for c in cols)
        arr = np.asarray(history.to_numpy(), dtype=np.float64)
    else:
        arr = np.asarray(history, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        names = ("demand",) if arr.shape[1] == 1 else tuple(str(j) for j in range(arr.shape[1]))
    if arr.ndim != 2:
        raise ValueError(f"history must be (T,) or (T, M), got shape {arr.shape}")
    return np.nan_to_num(arr, nan=0.0, posinf=0.0, neginf=0.0), names


class GrowthBootstrapForecaster:
    """Joint sample paths from resampled past growth trajectories.

    Args:
        num_samples: sample paths S per forecast.
        window_s: how far back origins are drawn from (seconds).
        season_s: the seasonal period (seconds; 0 disables), normally one day. Origins within
            ``phase_halfwidth_s`` of the current time of day are preferred when at least
            ``min_pool`` of them exist.
        phase_halfwidth_s: half-width of the same-phase neighbourhood (seconds).
        min_pool: fewest origins a pool must hold to be used.
        space: ``"log"`` (multiplicative growth, demand-like series) or ``"linear"``.
        neighbours: fraction of the window's origins kept as analogs (0: all of them, or the
            same-phase pool). Analogs are the origins nearest to now in level, last change
            and (with ``season_s``) time of day, each feature scaled by its spread, so a
            spike's aftermath is forecast from past spikes' aftermaths and a quiet night
            from quiet nights. At least ``min_pool`` are kept.
        phase_weight: weight of the time-of-day distance against level and change.
        extra_steps: steps produced beyond the ``horizon`` asked for. Step 0 is the sample in
            progress at ``now``, so a window that reaches ``now + horizon * step`` may touch
            one sample more than ``horizon`` counts.
        offset_decay: how the current level carries forward. 1.0: each path is the current
            level plus the analog's growth (unbounded demand that scales, e.g. CPU). Below
            1: the path is the analog's own future plus the gap between now and the analog's
            level, the gap fading by this factor per step — for bounded series whose joint
            states matter (server power: servers cannot all exceed their past peaks at once).
        seed: seed of the resampling generator (a run is reproducible).

    """

    name = "growth-bootstrap"

    def __init__(
        self,
        num_samples: int = 256,
        window_s: float = 14 * 86400.0,
        season_s: float = 86400.0,
        phase_halfwidth_s: float = 3600.0,
        min_pool: int = 30,
        space: str = "log",
        neighbours: float = 0.1,
        phase_weight: float = 0.5,
        extra_steps: int = 1,
        offset_decay: float = 1.0,
        seed: int = 0,
    ) -> None:
        if space not in {"log", "linear"}:
            raise ValueError(f"space must be 'log' or 'linear', got {space!r}")
        if num_samples < 1:
            raise ValueError(f"num_samples must be >= 1, got {num_samples}")
        self.num_samples = num_samples
        self.window_s = window_s
        self.season_s = season_s
        self.phase_halfwidth_s = phase_halfwidth_s
        self.min_pool = min_pool
        self.space = space
        self.neighbours = neighbours
        self.phase_weight = phase_weight
        self.extra_steps = extra_steps
        if not 0.0 <= offset_decay <= 1.0:
            raise ValueError(f"offset_decay must be in [0, 1], got {offset_decay}")
        self.offset_decay = offset_decay
        self.rng = np.random.default_rng(seed)
        self._cache: tuple | None = None

    def state_dict(self) -> dict[str, Any]:
        """Return what a later call depends on, as plain data: the resampling generator."""
        return {"rng": _rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the daemon between two decisions)."""
        _set_rng_state(self.rng, state["rng"])
        self._cache = None

    def __call__(self, history: Any, now: float, step: float, horizon: int) -> Forecast:
        """Forecast ``horizon`` steps from ``now`` given ``history`` (data up to now only)."""
        horizon = int(horizon) + int(self.extra_steps)
        t_total = len(history)
        if t_total == 0:
            raise ValueError("growth-bootstrap needs at least one observation")
        w = max(1, int(self.window_s // step)) if step > 0 else t_total
        keep = min(t_total, w + horizon + 1)
        tail = history.iloc[-keep:] if hasattr(history, "iloc") else history[-keep:]
        y, names = _as_matrix(tail)  # (T, M), the last `keep` rows only
        key = (t_total, horizon, float(step), y[-1].tobytes())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._pool(y, t_total, step, horizon))
        z, c, origins, pool_kind = self._cache[1]
        m = y.shape[1]
        s = self.num_samples
        last = z[-1]  # (M,)
        if origins.size == 0:
            inc = np.zeros((s, horizon, m))
        else:
            pick = origins[self.rng.integers(0, origins.size, size=s)]  # (S,)
            idx = pick[:, None] + np.arange(1, horizon + 1)[None, :]  # (S, H)
            # the analog's own future, plus the gap between now and the analog's level, the
            # gap fading by offset_decay per step (1.0: pure growth added to the current level)
            fade = self.offset_decay ** np.arange(1, horizon + 1)  # (H,)
            gap = last[None, :] - z[pick]  # (S, M)
            inc = z[idx] - last[None, None, :] + fade[None, :, None] * gap[:, None, :]
        paths = last[None, None, :] + inc  # (S, H, M)
        if self.space == "log":
            paths = np.exp(paths) - c[None, None, :]
        paths = np.maximum(paths, 0.0)
        return Forecast(
            samples=paths,
            start=now,
            step=step,
            indicators=names,
            model=self.name,
            info={"pool": pool_kind, "origins": int(origins.size)},
        )

    def _pool(
        self, y: np.ndarray, t_total: int, step: float, horizon: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """Return the transformed series, offset, eligible origins and the pool's kind."""
        t_len, m = y.shape
        if self.space == "log":
            # offset keeps zeros finite and damps relative noise on near-idle series
            c = 0.01 * np.maximum(np.abs(y).mean(axis=0), 1e-6)  # (M,)
            z = np.log(np.maximum(y, 0.0) + c)
        else:
            c = np.zeros(m)
            z = y
        n_orig = t_len - horizon  # origins t with t + horizon <= T - 1
        if n_orig < 1:
            return z, c, np.zeros(0, dtype=np.int64), "persistence"
        origins = np.arange(1, n_orig) if n_orig > 1 else np.arange(0, n_orig)
        kind = "recent"
        k = max(self.min_pool, int(self.neighbours * origins.size))
        if self.neighbours > 0 and origins.size > k:
            # analog selection: origins whose level, last change and time of day resemble now
            lvl = z[origins]  # (P, M)
            chg = z[origins] - z[origins - 1]  # (P, M)
            now_l = z[-1]
            now_c = z[-1] - z[-2] if t_len > 1 else np.zeros(m)
            dist = np.zeros(origins.size)
            for feat, cur in ((lvl, now_l), (chg, now_c)):
                scale = np.maximum(feat.std(axis=0), 1e-9)  # (M,)
                dist += (np.abs(feat - cur) / scale).mean(axis=1)
            if self.season_s > 0 and step > 0:
                period = self.season_s / step
                phase = (t_len - 1 - origins) % period
                dist += self.phase_weight * np.minimum(phase, period - phase) / (period / 4.0)
            origins = origins[np.argpartition(dist, k - 1)[:k]]
            kind = "analog"
        elif self.season_s > 0 and step > 0:
            period = self.season_s / step
            # circular distance in steps between each origin's phase and the last row's
            phase = (t_len - 1 - origins) % period
            dist = np.minimum(phase, period - phase)
            same = origins[dist <= self.phase_halfwidth_s / step]
            if same.size >= self.min_pool:
                origins, kind = same, "same-phase"
        return z, c, origins, kind


class IntermittentCountForecaster:
    """Hurdle forecaster for per-step counts of many sparse or dense entities.

    **Whether** an entity is active next step comes from the distribution of its idle
    time. With ``a`` idle steps since its last active step (0 when the latest step was
    active), the hazard of activity next step is

        h_f(a) = (n_eq_f(a) + k * g_f(a)) / (n_ge_f(a) + k)

    where ``n_ge_f(a)`` counts the entity's past idle runs that reached ``a`` steps and
    ``n_eq_f(a)`` those that ended right after ``a``: a Beta–Bernoulli posterior per age
    with ``k`` pseudo-observations whose prior mean ``g_f(a)`` is the entity's hazard over
    all ages ``>= a``, itself shrunk towards the entity's share of active steps (see
    :meth:`hazard`). A timer
    function firing every 10 minutes thus gets ``h(9) ~ 1`` and ``h(a) ~ 0`` elsewhere: the
    next invocation time is forecast, not just a count. Ages beyond ``max_age`` share the last
    bin; an entity never active so far gets its (shrunk, small) share of active steps.

    **How many** when active: the empirical distribution of the entity's last
    ``count_window`` active values (overdispersion and level shifts included), read at a
    stratified quantile; before any history, 1.

    Step 0 is stratified: sample ``s`` sits at quantile ``u_s = (s + 0.5) / S`` of the
    predictive law of each entity (the top ``h`` share of samples are the active ones, in
    increasing count order), so rare arrivals are resolved (to ``1 / S``: 0.1 % with the
    default 1,024 samples) and a critical-fractile reading of the samples is exact up to
    ``1 / S``. Later steps chain the
    hazard along each path with independent uniforms. Entities are read one by one by the
    warm-pool policy, so the samples' cross-entity joint law (comonotone in step 0) is not used.

    The forecaster keeps sufficient statistics between calls and folds in only the rows
    appended since the last call (a history that does not extend the previous one resets
    them), so a call costs O(F * (S * H + count_window)).

    Args:
        num_samples: sample paths S.
        max_age: longest idle age tracked (steps).
        prior_k: pseudo-observations of the per-age posterior's prior.
        tail_k: pseudo-observations of the tail hazard's prior (None: ``prior_k``).
        age_smooth: weight of the neighbouring ages ``a - 1`` and ``a + 1`` in the per-age
            counts (a timer that jitters by a minute still reads as periodic).
        use_octaves: put a level between the exact age and the tail: the entity's hazard
            in the octave of ages holding ``a`` (0, 1, 2-3, 4-7, ...). A function with few
            idle runs then still shows that it is likelier to be invoked soon after an
            invocation than after an hour of silence.
        count_window: active values per entity kept for the count distribution.
        seed: seed for the steps after the first (the first is stratified).

    """

    name = "intermittent-hurdle"

    def __init__(
        self,
        num_samples: int = 1024,
        max_age: int = 1440,
        prior_k: float = 2.0,
        count_window: int = 20,
        tail_k: float | None = None,
        age_smooth: float = 1.0,
        use_octaves: bool = True,
        seed: int = 0,
    ) -> None:
        if num_samples < 1 or max_age < 1 or count_window < 1:
            raise ValueError("num_samples, max_age and count_window must be >= 1")
        self.num_samples = num_samples
        self.max_age = max_age
        self.prior_k = prior_k
        self.tail_k = prior_k if tail_k is None else tail_k
        self.age_smooth = age_smooth
        self.use_octaves = use_octaves
        self.count_window = count_window
        self.rng = np.random.default_rng(seed)
        self._t = 0
        self._end: float | None = None  # ``now`` of the last call: where absorbed rows end
        self._last_row: np.ndarray | None = None

    # ----------------------------------------------------------------- statistics
    def _reset(self, f: int) -> None:
        a = self.max_age + 1
        self._t = 0
        self._last_row = None
        self.age = np.full(f, -1, dtype=np.int64)  # idle steps since last active; -1: never
        self.ge = np.zeros((f, a))  # idle runs that reached age a
        self.eq = np.zeros((f, a))  # idle runs that ended right after age a
        # the same per octave of age (0, 1, 2-3, 4-7, ...): a coarser level of the hierarchy
        self.octave = np.floor(np.log2(np.arange(a) + 1.0)).astype(np.int64)  # (A,)
        self.ge_o = np.zeros((f, int(self.octave[-1]) + 1))
        self.eq_o = np.zeros((f, int(self.octave[-1]) + 1))
        self.n_act = np.zeros(f)  # active steps per entity
        self.buf = np.zeros((f, self.count_window))  # last active values, ring buffer
        self.n_buf = np.zeros(f, dtype=np.int64)  # active values seen (for the ring position)

    def _absorb(self, rows: np.ndarray) -> None:
        f = rows.shape[1]
        fi = np.arange(f)
        for row in rows:  # (F,)
            active = row > 0
            seen = self.age >= 0
            a = np.minimum(self.age, self.max_age)
            # every seen entity was at risk at its age; the active ones ended their idle run
            self.ge[fi[seen], a[seen]] += 1.0
            hit = seen & active
            self.eq[fi[hit], a[hit]] += 1.0
            if self.use_octaves:
                self.ge_o[fi[seen], self.octave[a[seen]]] += 1.0
                self.eq_o[fi[hit], self.octave[a[hit]]] += 1.0
            self.n_act += active
            self.age = np.where(active, 0, np.where(seen, self.age + 1, -1))
            act = fi[active]
            self.buf[act, self.n_buf[act] % self.count_window] = row[active]
            self.n_buf[act] += 1
        self._t += rows.shape[0]
        self._last_row = rows[-1].copy()

    def hazard(self, age: np.ndarray | None = None) -> np.ndarray:
        """Probability each entity is active in the next step, given its idle age.

        A chain of Beta–Bernoulli posterior means, each the prior mean of the next: the
        entity's share of active steps so far ``r_f``; its hazard over all ages ``>= a``;
        its hazard over the octave of ages holding ``a`` (with ``use_octaves``); its hazard at
        exactly ``a`` (neighbours weighted by ``age_smooth``). An entity never active gets
        ``r_f`` (small and shrinking).

        Args:
            age: ``(F,)`` or ``(S, F)`` idle ages in steps (-1: never active); None uses the
                current ages.

        Returns:
            Array of the same shape as ``age``.

        """
        age = self.age if age is None else age
        k, k2 = self.prior_k, self.tail_k
        pool = (self.n_act.sum() + 0.5) / (self._t * self.n_act.size + 1.0)
        rate = (self.n_act + pool) / (self._t + 1.0)  # (F,) share of active steps, shrunk
        a = np.minimum(np.maximum(age, 0), self.max_age)
        if age.ndim == 1:
            # sums over ages >= a_f for the current ages only: one masked pass, (F, A)
            mask = np.arange(self.max_age + 1)[None, :] >= a[:, None]
            t_eq = (self.eq * mask).sum(axis=1)
            t_ge = (self.ge * mask).sum(axis=1)
            fi = np.arange(age.size)
            g = (t_eq + k2 * rate) / (t_ge + k2)
            if self.use_octaves:
                o = self.octave[a]
                g = (self.eq_o[fi, o] + k2 * g) / (self.ge_o[fi, o] + k2)
            e_a, g_a = self._at(fi, a)
            h = (e_a + k * g) / (g_a + k)
            return np.where(age < 0, rate, h)
        # per-path ages (later horizon steps): full tail-sum tables, (F, A)
        tail_eq = np.cumsum(self.eq[:, ::-1], axis=1)[:, ::-1]
        tail_ge = np.cumsum(self.ge[:, ::-1], axis=1)[:, ::-1]
        fi = np.broadcast_to(np.arange(age.shape[-1]), age.shape)
        g = (tail_eq[fi, a] + k2 * rate[fi]) / (tail_ge[fi, a] + k2)
        if self.use_octaves:
            o = self.octave[a]
            g = (self.eq_o[fi, o] + k2 * g) / (self.ge_o[fi, o] + k2)
        e_a, g_a = self._at(fi, a)
        h = (e_a + k * g) / (g_a + k)
        return np.where(age < 0, rate[fi], h)

    def _at(self, fi: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return counts at age ``a`` plus ``age_smooth`` times those at ``a ± 1``."""
        e, g = self.eq[fi, a], self.ge[fi, a]
        if self.age_smooth > 0:
            for b in (np.maximum(a - 1, 0), np.minimum(a + 1, self.max_age)):
                e = e + self.age_smooth * self.eq[fi, b]
                g = g + self.age_smooth * self.ge[fi, b]
        return e, g

    def _count_quantile(self, v: np.ndarray) -> np.ndarray:
        """Active-count quantiles ``v`` ``(S, F)`` in [0, 1) from each entity's recent values."""
        n = np.minimum(self.n_buf, self.count_window)  # (F,)
        # unfilled slots sort to the end as +inf and are never indexed
        vals = np.where(np.arange(self.count_window)[None, :] < n[:, None], self.buf, np.inf)
        vals = np.sort(vals, axis=1)  # (F, W)
        idx = np.minimum((v * n[None, :]).astype(np.int64), np.maximum(n - 1, 0)[None, :])
        out = vals[np.arange(vals.shape[0])[None, :], idx]  # (S, F)
        return np.where(n[None, :] > 0, out, 1.0)

    # ----------------------------------------------------------------- forecasting
    _STATE_ARRAYS = ("age", "ge", "eq", "ge_o", "eq_o", "n_act", "buf", "n_buf")

    def state_dict(self) -> dict[str, Any]:
        """Return the absorbed statistics and the generator as plain data (no pickle)."""
        out: dict[str, Any] = {"rng": _rng_state(self.rng), "t": self._t, "end": self._end}
        if self._last_row is not None:
            out["last_row"] = self._last_row.copy()
            out.update({k: getattr(self, k).copy() for k in self._STATE_ARRAYS})
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the daemon between two decisions)."""
        _set_rng_state(self.rng, state["rng"])
        last = state.get("last_row")
        if last is None:
            self._t, self._end, self._last_row = 0, None, None
            return
        self._reset(int(np.shape(last)[0]))
        for k in self._STATE_ARRAYS:
            arr = np.asarray(state[k])
            if arr.shape != getattr(self, k).shape:
                raise ValueError(f"forecaster state {k!r} has shape {arr.shape}, want "
                                 f"{getattr(self, k).shape} (max_age or count_window changed)")
            setattr(self, k, arr.astype(getattr(self, k).dtype))
        self._t, self._end = int(state["t"]), state.get("end")
        self._last_row = np.asarray(last, dtype=np.float64)

    def _new_rows_from(self, history: Any, f: int, t_len: int, now: float,
                       step: float) -> int | None:
        """Index of the first row of ``history`` not absorbed yet (None: start afresh).

        By time when ``now`` moved on by whole steps since the last call (the daemon hands a
        window that slides), else by count (the replay hands the whole history so far); in
        both cases the last absorbed row must be where it is expected.
        """
        if self._last_row is None or self._last_row.shape[0] != f:
            return None
        if self._end is not None and step > 0:
            q = (now - float(self._end)) / step
            k = int(round(q))
            if k >= 1 and abs(q - k) < 1e-6 and t_len - 1 - k >= 0 and np.array_equal(
                np.maximum(_row(history, t_len - 1 - k), 0.0), self._last_row
            ):
                return t_len - k
        if 1 <= self._t <= t_len and np.array_equal(
            np.maximum(_row(history, self._t - 1), 0.0), self._last_row
        ):
            return self._t
        return None

    def __call__(self, history: Any, now: float, step: float, horizon: int) -> Forecast:
        """Forecast ``horizon`` steps of counts for every entity (column) of ``history``."""
        names = _names(history)
        f = len(names)
        t_len = len(history)
        first_new = self._new_rows_from(history, f, t_len, now, step)
        if first_new is not None:  # fold in only the new rows (the usual call)
            if t_len > first_new:
                new, _ = _as_matrix(history[first_new:] if not hasattr(history, "iloc")
                                    else history.iloc[first_new:])
                self._absorb(np.maximum(new, 0.0))
        else:
            y, _ = _as_matrix(history)  # (T, F)
            self._reset(f)
            self._absorb(np.maximum(y, 0.0))
        self._end = float(now)
        s = self.num_samples
        out = np.zeros((s, horizon, f))
        age = self.age.copy()
        strat = (np.arange(s) + 0.5) / s  # (S,)
        hz0 = self.hazard(age)  # (F,)
        for h in range(horizon):
            hz = hz0 if h == 0 else self.hazard(age)  # (F,) then (S, F)
            u = np.broadcast_to(strat[:, None], (s, f)) if h == 0 else self.rng.random((s, f))
            # the top `hz` share of quantiles are active; rescale them to [0, 1) for the count
            active = u > 1.0 - hz
            v = np.clip((u - (1.0 - hz)) / np.maximum(hz, 1e-12), 0.0, 1.0 - 1e-12)
            cnt = self._count_quantile(v)
            out[:, h, :] = np.where(active, cnt, 0.0)
            age = np.where(active, 0, np.where(age >= 0, age + 1, age))
        return Forecast(
            samples=out,
            start=now,
            step=step,
            indicators=names,
            model=self.name,
            info={"p_active": hz0},
        )


def default_forecaster(scenario: str, seed: int = 0) -> Any:
    """Make the online forecaster ``bayes`` is fed in replay (and the daemon's fallback).

    Args:
        scenario: ``vm``, ``serverless`` or ``power``.
        seed: seed of the forecaster's resampling.

    Returns:
        A callable ``(history, now, step, horizon) -> Forecast``.

    """
    if scenario == "vm":
        return GrowthBootstrapForecaster(space="log", seed=seed)
    if scenario == "serverless":
        return IntermittentCountForecaster(seed=seed)
    if scenario == "power":
        # power moves within seconds; no daily season, a short window of recent behaviour
        return GrowthBootstrapForecaster(
            space="linear", season_s=0.0, window_s=3600.0, neighbours=0.1, offset_decay=0.9,
            seed=seed,
        )
    raise ValueError(f"no default forecaster for scenario {scenario!r}")


class PredictorForecaster:
    """A trained model (a :class:`models.base.Predictor`) fed to policies like an online one.

    Each call forecasts from the last ``context_length`` rows of ``history``, taken to end at
    ``now`` (step 0 is the sample in progress, as with the online forecasters). A univariate
    model given a history of M columns forecasts each column as its own entity, in one batch
    (a row's servers, a day's functions). Too little history, or a horizon beyond the model's,
    is a :class:`~common.errors.NoDataError`: the policy falls back and says so. Calls are
    seeded in sequence, so a replay is reproducible.
    """

    def __init__(self, predictor: Any, seed: int = 0, name: str | None = None) -> None:  # noqa: ANN401
        self.predictor = predictor
        self.seed = int(seed)
        self.calls = 0
        self.name = name or f"model:{predictor.model_name or 'predictor'}"
        self._known: np.ndarray | None = None  # (T, M) series whose forecasts are cached
        self._cache: dict[int, np.ndarray] = {}  # rows of history -> (S, H, M) samples

    def precompute(self, series: np.ndarray, start: float, step: float,
                   batch_size: int = 1024) -> None:
        """Forecast after every prefix of a known series in a few batched calls.

        A replay asks after each decision's history, one window at a time, which costs a
        model call each (half a second for ``quantile-gbm`` on 2 cores); the windows are all
        known in advance, so they are forecast in batches here and looked up by length later
        (a history that differs from ``series`` is still forecast on the spot).
        """
        y = np.asarray(series, dtype=np.float64)
        y = y[:, None] if y.ndim == 1 else y
        p = self.predictor
        ctx, h = p.context_length, p.prediction_length
        k = len(p.indicators)
        if k not in (1, y.shape[1]):
            return
        lengths = np.arange(ctx, len(y) + 1)
        if lengths.size == 0:
            return
        win = np.stack([y[t - ctx:t] for t in lengths])  # (W, L, M)
        if k == 1 and y.shape[1] > 1:  # each column its own entity
            x = win.transpose(0, 2, 1).reshape(-1, ctx, 1)  # (W*M, L, 1)
            starts = np.repeat(lengths, y.shape[1])
        else:
            x, starts = win, lengths
        t = start + step * (starts[:, None] + np.arange(-ctx, h)[None, :])  # (N, L + H)
        outs = p.predict_windows(x, t, seed=self.seed, batch_size=batch_size)
        if not all(isinstance(o, Forecast) for o in outs):
            return
        samples = np.stack([o.samples for o in outs])  # (N, S, H, k)
        if k == 1 and y.shape[1] > 1:
            samples = samples.reshape(len(lengths), y.shape[1], *samples.shape[1:3])
            samples = samples.transpose(0, 2, 3, 1)  # (W, S, H, M)
        self._known = y
        self._cache = {int(n): samples[i] for i, n in enumerate(lengths)}

    def __call__(self, history: Any, now: float, step: float, horizon: int) -> Forecast:  # noqa: ANN401
        """Forecast ``horizon`` steps from ``now`` (see the class doc)."""
        from common.errors import NoDataError

        y, names = _as_matrix(history)
        n_rows, m = y.shape
        hit = self._cache.get(n_rows)
        if (hit is not None and horizon <= hit.shape[1] and hit.shape[2] == m
                and np.array_equal(y[-1], self._known[n_rows - 1])):
            return Forecast(samples=np.maximum(hit[:, :horizon, :], 0.0), start=now, step=step,
                            indicators=names, model=self.name)
        p = self.predictor
        ctx, h_model = p.context_length, p.prediction_length
        if horizon > h_model:
            raise NoDataError(f"{self.name} forecasts {h_model} steps, {horizon} wanted")
        if n_rows < ctx:
            raise NoDataError(f"{self.name} reads {ctx} rows of context, {n_rows} so far")
        k = len(p.indicators)
        if k == m:
            x = y[-ctx:][None]  # (1, L, M)
        elif k == 1:
            x = y[-ctx:].T[:, :, None]  # (M, L, 1): each column its own entity
        else:
            raise ValueError(f"{self.name} forecasts {k} indicators, the history has {m}")
        t = now + step * np.arange(-ctx, h_model, dtype=np.float64)  # (L + H,)
        t = np.broadcast_to(t, (x.shape[0], t.size))
        self.calls += 1
        outs = p.predict_windows(x, t, seed=self.seed + self.calls)
        bad = [o for o in outs if not isinstance(o, Forecast)]
        if bad:
            raise NoDataError(f"{self.name}: {bad[0].reason}")
        if k == m:
            samples = outs[0].samples[:, :horizon, :]
        else:
            samples = np.stack([o.samples[:, :horizon, 0] for o in outs], axis=-1)  # (S, h, M)
        return Forecast(samples=np.maximum(samples, 0.0), start=now, step=step,
                        indicators=names, model=self.name)


class TruthForecaster:
    """Perfect foresight written as a Forecast: the realised future in its one sample.

    Built from the whole series of a replay (``(T, M)``, the columns the scenario's forecaster
    is fed), it answers a history of ``t`` rows with rows ``t .. t + horizon - 1`` (the last
    row held past the end). Fed to ``bayes`` it separates what the policy loses from what the
    forecaster loses: where ``bayes`` with the truth is still far from the ``oracle``, the
    policy is to blame.
    """

    name = "truth"

    def __init__(self, series: np.ndarray) -> None:
        y = np.asarray(series, dtype=np.float64)
        self.y = y[:, None] if y.ndim == 1 else y

    def __call__(self, history: Any, now: float, step: float, horizon: int) -> Forecast:  # noqa: ANN401
        """Return the realised rows after ``history`` (see the class doc)."""
        t = len(history)
        idx = np.minimum(np.arange(t, t + int(horizon)), len(self.y) - 1)
        names = _names(history)
        return Forecast(samples=self.y[idx][None], start=now, step=step, indicators=names,
                        model=self.name)
