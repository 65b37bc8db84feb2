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

import math
from typing import Any

import numpy as np

from models.forecast import Forecast


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
        self.rng = np.random.default_rng(seed)
        self._cache: tuple | None = None

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
            inc = z[idx] - z[pick][:, None, :]  # (S, H, M)
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
        """Transformed series, offset, eligible origins (tail indices) and the pool's kind."""
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

    Activity: with ``a`` steps since the entity's last active step (0 when the latest step
    was active), the hazard of activity next step is

        h_f(a) = (n_eq_f(a) + k * h_pool(a)) / (n_ge_f(a) + k)

    where ``n_ge_f(a)`` counts the entity's past idle gaps that lasted at least ``a`` steps
    and ``n_eq_f(a)`` those that ended exactly after ``a`` (a Beta–Bernoulli posterior with
    the pooled hazard as prior mean and ``k`` pseudo-observations). Gaps longer than
    ``max_age`` are folded into the last bin. When active, the count is negative binomial:
    a Gamma(shape ``alpha0 + sum w*n``, rate ``beta0 + sum w``) posterior over the entity's
    active-step counts with weights ``w`` halving every ``half_life`` active steps.

    The forecaster keeps sufficient statistics between calls and updates them with the rows
    appended since the last call (a history that does not extend the previous one resets them),
    so each call costs O(F * S * H).

    Args:
        num_samples: sample paths S.
        max_age: longest idle age tracked (steps).
        prior_k: pseudo-observations of the pooled-hazard prior.
        half_life: half-life of the count posterior in active steps.
        seed: seed for steps after the first (the first step is stratified).
    """

    name = "intermittent-hurdle"

    def __init__(
        self,
        num_samples: int = 200,
        max_age: int = 1440,
        prior_k: float = 2.0,
        half_life: float = 30.0,
        seed: int = 0,
    ) -> None:
        self.num_samples = num_samples
        self.max_age = max_age
        self.prior_k = prior_k
        self.decay = 0.5 ** (1.0 / half_life)
        self.rng = np.random.default_rng(seed)
        self._t = 0
        self._last_row: np.ndarray | None = None

    # ----------------------------------------------------------------- statistics
    def _reset(self, f: int) -> None:
        a = self.max_age + 1
        self._t = 0
        self._last_row = None
        self.age = np.full(f, -1, dtype=np.int64)  # -1: never active yet
        self.ge = np.zeros((f, a))  # gaps that reached age >= a
        self.eq = np.zeros((f, a))  # gaps that ended at exactly age a (active after a idle)
        self.cnt_w = np.zeros(f)  # discounted sum of active counts
        self.w = np.zeros(f)  # discounted number of active steps
        self.pool_ge = np.zeros(a)  # the same, summed over entities
        self.pool_eq = np.zeros(a)

    def _absorb(self, rows: np.ndarray) -> None:
        f = rows.shape[1]
        fi = np.arange(f)
        for row in rows:  # (F,)
            active = row > 0
            seen = self.age >= 0
            a = np.minimum(self.age, self.max_age)
            # every seen entity at age a was "at risk" at age a; active ones ended their gap
            self.ge[fi[seen], a[seen]] += 1.0
            hit = seen & active
            self.eq[fi[hit], a[hit]] += 1.0
            np.add.at(self.pool_ge, a[seen], 1.0)
            np.add.at(self.pool_eq, a[hit], 1.0)
            self.age = np.where(active, 0, np.where(seen, self.age + 1, -1))
            self.cnt_w = np.where(active, self.decay * self.cnt_w + row, self.cnt_w)
            self.w = np.where(active, self.decay * self.w + 1.0, self.w)
        self._t += rows.shape[0]
        self._last_row = rows[-1].copy()

    def _update(self, y: np.ndarray) -> None:
        t_len, f = y.shape
        fresh = (
            self._last_row is None
            or self._last_row.shape[0] != f
            or t_len < self._t
            or not np.array_equal(y[self._t - 1], self._last_row)
        )
        if fresh:
            self._reset(f)
        self._absorb(y[self._t :])

    def hazard(self, age: np.ndarray | None = None) -> np.ndarray:
        """Probability each entity is active in the next step, given its idle age.

        Args:
            age: ``(F,)`` or ``(S, F)`` idle ages in steps (-1: never active); None uses the
                current ages.

        Returns:
            Array of the same shape as ``age``.
        """
        age = self.age if age is None else age
        # pooled hazard per age, itself shrunk towards the overall activity rate
        overall = (self.pool_eq.sum() + 0.5) / (self.pool_ge.sum() + 1.0)
        h_pool = (self.pool_eq + overall) / (self.pool_ge + 1.0)  # (A,)
        a = np.minimum(np.maximum(age, 0), self.max_age)
        fi = np.broadcast_to(np.arange(age.shape[-1]), age.shape)
        h = (self.eq[fi, a] + self.prior_k * h_pool[a]) / (self.ge[fi, a] + self.prior_k)
        # never active so far: as likely to wake as an entity idle for the longest age
        return np.where(age < 0, h_pool[-1], h)

    # ----------------------------------------------------------------- forecasting
    def __call__(self, history: Any, now: float, step: float, horizon: int) -> Forecast:
        """Forecast ``horizon`` steps of counts for every entity (column) of ``history``."""
        y, names = _as_matrix(history)  # (T, F)
        self._update(np.maximum(y, 0.0))
        f = y.shape[1]
        s = self.num_samples
        # count when active: Gamma(shape, rate) posterior on the rate, NB predictive
        shape = 0.5 + self.cnt_w  # (F,)
        rate = 0.5 + self.w
        mean_active = np.maximum(shape / rate, 1.0)
        out = np.zeros((s, horizon, f))
        age = self.age.copy()
        strat = (np.arange(s) + 0.5) / s  # (S,)
        for h in range(horizon):
            hz = self.hazard(age)  # (F,) then (S, F)
            if h == 0:
                u = np.broadcast_to(strat[:, None], (s, f))
            else:
                u = self.rng.random((s, f))
            # the top quantiles are the active ones: sample s is active iff u > 1 - hazard
            active = u > 1.0 - hz
            lam = self.rng.gamma(shape, 1.0 / rate, size=(s, f))  # (S, F)
            cnt = np.maximum(self.rng.poisson(lam), 1)
            # in the stratified step, higher quantiles carry larger counts (monotone in u)
            if h == 0:
                cnt = np.sort(cnt, axis=0)
            out[:, h, :] = np.where(active, cnt, 0.0)
            age = np.where(active, 0, np.where(age >= 0, age + 1, age))
        info = {"p_active": self.hazard(), "mean_active_count": mean_active}
        return Forecast(
            samples=out, start=now, step=step, indicators=names, model=self.name, info=info
        )
