"""``growth-bootstrap``: joint sample paths from resampled past growth trajectories.

An online model (:mod:`models.online`), the forecaster ``bayes`` is fed for ``vm`` (log
space) and ``power`` (linear space). Every past origin ``t`` gives a trajectory of
increments ``z[t+h] - z[t]`` (``z`` the series in log or linear space); S origins are
resampled and their increments added to the current level. One origin per path for all
series keeps their joint behaviour (servers of a power row rise together).

Origins are *analogs* (``neighbours`` > 0): the share of past origins nearest to now in
level, last change and (with ``season_s``) time of day, each feature scaled by its spread,
so a spike's aftermath is forecast from past spikes' aftermaths and a quiet night from quiet
nights. Without analogs, origins at the same time of day are preferred when at least
``min_pool`` of them exist. Each call is vectorised numpy with no fitting loop, and the pool
is cached per new sample, so a replay makes thousands of decisions per second. The online
state is the resampling generator only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from common.errors import ConfigError
from models.base import register_model
from models.forecast import Forecast
from models.online import (
    OnlineEstimator,
    OnlinePredictor,
    as_matrix,
    history_tail,
    rng_state,
    set_rng_state,
    window_step,
)

#: (z (T, M), offset c (M,), origins (G, K) per group, kind, group of each series (M,))
Pool = tuple[np.ndarray, np.ndarray, np.ndarray, str, np.ndarray]


def correlated_groups(y: np.ndarray, threshold: float) -> np.ndarray:
    """Group series whose step changes move together; ``(M,)`` group index per series.

    Two series are linked when the correlation of their first differences over ``y``
    ``(T, M)`` is at least ``threshold``; groups are the connected components (single
    linkage), numbered in order of their first series. A series that never changes is a
    group of its own. Servers of one synchronous job (the GPUs of a training node) form
    one group; independent inference pods each form their own.
    """
    t_len, m = y.shape
    group = np.arange(m)
    if m < 2 or t_len < 3:
        return group
    dz = np.diff(y, axis=0)  # (T-1, M)
    dz = dz - dz.mean(axis=0)
    norm = np.sqrt((dz * dz).sum(axis=0))  # (M,)
    live = norm > 1e-9
    corr = (dz.T @ dz) / np.maximum(np.outer(norm, norm), 1e-18)  # (M, M)
    linked = (corr >= threshold) & live[:, None] & live[None, :]
    for i in range(m):  # union-find by relabelling: m is a row of servers, not thousands
        js = np.flatnonzero(linked[i])
        if js.size:
            labels = np.unique(group[np.append(js, i)])
            group[np.isin(group, labels)] = labels.min()
    _, out = np.unique(group, return_inverse=True)
    return out.astype(np.int64)


class GrowthBootstrapPredictor(OnlinePredictor):
    """Growth-bootstrap sample paths (see the module doc and :class:`GrowthBootstrapEstimator`)."""

    def reset(self) -> None:
        """Restart the resampling generator from the seed and drop the cached pool."""
        self.rng = np.random.default_rng(int(self.config.get("seed", 0)))
        self._cache: tuple[tuple, Pool] | None = None

    def state_dict(self) -> dict[str, Any]:
        """Return what a later call depends on, as plain data: the resampling generator."""
        return {"rng": rng_state(self.rng)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the daemon between two decisions)."""
        set_rng_state(self.rng, state["rng"])
        self._cache = None

    # -- online ------------------------------------------------------------------
    def forecast(self, history: Any, now: float, step: float, horizon: int) -> Forecast:
        """Forecast ``horizon`` (+ ``extra_steps``) steps from ``now`` given ``history``.

        Raises:
            ValueError: an empty history.

        """
        horizon = int(horizon) + int(self.config["extra_steps"])
        t_total = len(history)
        if t_total == 0:
            raise ValueError("growth-bootstrap needs at least one observation")
        w = max(1, int(self.config["window_s"] // step)) if step > 0 else t_total
        keep = min(t_total, w + horizon + 1)
        y, names = as_matrix(history_tail(history, t_total - keep))  # (T, M), the last rows
        key = (t_total, horizon, float(step), y[-1].tobytes())
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._pool(y, step, horizon))
        pool = self._cache[1]
        paths = self._paths(pool, self.rng, self.num_samples, horizon)
        return self._online_forecast(paths, now, step, names,
                                     {"pool": pool[3], "origins": int(pool[2].shape[1])})

    # -- windows -----------------------------------------------------------------
    def _sample(self, x: np.ndarray, t: np.ndarray, num_samples: int,
                rng: np.random.Generator) -> np.ndarray:
        """Each window ``x[i] (L, M)`` read as a whole history; ``(N, S, H, M)`` samples."""
        n, ell, _ = x.shape
        h = self.prediction_length
        out = np.empty((n, num_samples, h, x.shape[2]))
        for i in range(n):
            step = window_step(t[i], ell)
            y = np.nan_to_num(x[i], nan=0.0, posinf=0.0, neginf=0.0)
            out[i] = self._paths(self._pool(y, step, h), rng, num_samples, h)
        return out

    # -- the model ---------------------------------------------------------------
    def _paths(self, pool: Pool, rng: np.random.Generator, s: int, horizon: int) -> np.ndarray:
        """Draw ``s`` joint paths ``(S, H, M)`` from a pool (one origin per path)."""
        z, c, origins, _, group = pool
        m = z.shape[1]
        last = z[-1]  # (M,)
        if origins.size == 0:
            inc = np.zeros((s, horizon, m))
        else:
            g, k = origins.shape
            # one origin per path and group: series of a group keep their joint past,
            # groups are drawn independently (one group: every series jointly)
            pick_g = origins[np.arange(g)[None, :], rng.integers(0, k, size=(s, g))]  # (S, G)
            pick = pick_g[:, group]  # (S, M)
            idx = pick[:, None, :] + np.arange(1, horizon + 1)[None, :, None]  # (S, H, M)
            cols = np.arange(m)
            # the analog's own future, plus the gap between now and the analog's level, the
            # gap fading by offset_decay per step (1.0: pure growth added to the current level)
            fade = float(self.config["offset_decay"]) ** np.arange(1, horizon + 1)  # (H,)
            gap = last[None, :] - z[pick, cols[None, :]]  # (S, M)
            inc = z[idx, cols[None, None, :]] - last[None, None, :] \
                + fade[None, :, None] * gap[:, None, :]
        paths = last[None, None, :] + inc  # (S, H, M)
        if self.config["space"] == "log":
            paths = np.exp(paths) - c[None, None, :]
            seen = (np.exp(z) - c[None, :]).max(axis=0)  # (M,) the largest value in the window
        else:
            seen = z.max(axis=0)
        paths = np.maximum(paths, 0.0)
        cap = float(self.config["max_growth"])
        if cap > 0:
            # a growth learnt from a near-zero origin (an idle stretch before a burst) is a
            # factor of hundreds in log space; added to a burst's level it forecast 277
            # replicas for a series that never exceeded 30 requests/s
            paths = np.minimum(paths, cap * np.maximum(seen, 0.0)[None, None, :])
        return paths

    def _pool(self, y: np.ndarray, step: float, horizon: int) -> Pool:
        """Return the transformed series, offset, eligible origins and the pool's kind."""
        cfg = self.config
        t_len, m = y.shape
        if cfg["space"] == "log":
            # offset keeps zeros finite and damps relative noise on near-idle series
            c = 0.01 * np.maximum(np.abs(y).mean(axis=0), 1e-6)  # (M,)
            z = np.log(np.maximum(y, 0.0) + c)
        else:
            c = np.zeros(m)
            z = y
        n_orig = t_len - horizon  # origins t with t + horizon <= T - 1
        joint = np.zeros(m, dtype=np.int64)
        if n_orig < 1:
            return z, c, np.zeros((1, 0), dtype=np.int64), "persistence", joint
        origins = np.arange(1, n_orig) if n_orig > 1 else np.arange(0, n_orig)
        kind = "recent"
        min_pool, neighbours = int(cfg["min_pool"]), float(cfg["neighbours"])
        season_s = float(cfg["season_s"])
        k = max(min_pool, int(neighbours * origins.size))
        if neighbours > 0 and origins.size > k:
            # analog selection: origins whose level, last change and time of day resemble now
            thr = cfg.get("group_corr")
            group = joint if thr is None else correlated_groups(z, float(thr))
            lvl = z[origins]  # (P, M)
            chg = z[origins] - z[origins - 1]  # (P, M)
            now_l = z[-1]
            now_c = z[-1] - z[-2] if t_len > 1 else np.zeros(m)
            n_g = int(group.max()) + 1
            dist = np.zeros((origins.size, n_g))  # (P, G): mean distance over each group
            for feat, cur in ((lvl, now_l), (chg, now_c)):
                scale = np.maximum(feat.std(axis=0), 1e-9)  # (M,)
                d = np.abs(feat - cur) / scale  # (P, M)
                if n_g == 1:  # the joint pool, summed exactly as it always was
                    dist[:, 0] += d.mean(axis=1)
                else:
                    dist += np.stack([d[:, group == j].mean(axis=1) for j in range(n_g)],
                                     axis=1)
            if season_s > 0 and step > 0:
                period = season_s / step
                phase = (t_len - 1 - origins) % period
                dist += (float(cfg["phase_weight"]) * np.minimum(phase, period - phase) / (
                    period / 4.0))[:, None]
            near = np.argpartition(dist[:, 0], k - 1)[:k, None] if n_g == 1 else \
                np.argpartition(dist, k - 1, axis=0)[:k]  # (K, G)
            kind = "analog" if n_g == 1 else f"analog x {n_g} groups"
            return z, c, origins[near].T, kind, group
        elif season_s > 0 and step > 0:
            period = season_s / step
            # circular distance in steps between each origin's phase and the last row's
            phase = (t_len - 1 - origins) % period
            dist = np.minimum(phase, period - phase)
            same = origins[dist <= float(cfg["phase_halfwidth_s"]) / step]
            if same.size >= min_pool:
                origins, kind = same, "same-phase"
        return z, c, origins[None, :], kind, joint


@register_model
class GrowthBootstrapEstimator(OnlineEstimator):
    """Resampled past growth over the horizon, from analog origins (an online model).

    Params:
        window_s: how far back origins are drawn from (seconds), online.
        season_s: the seasonal period (seconds; 0 disables), normally one day.
        phase_halfwidth_s: half-width of the same-phase neighbourhood (seconds), used when
            ``neighbours`` is 0.
        min_pool: fewest origins a pool must hold to be used (and analogs kept).
        space: ``"log"`` (multiplicative growth, demand-like series) or ``"linear"``.
        neighbours: fraction of the origins kept as analogs (0: all, or the same-phase pool).
        phase_weight: weight of the time-of-day distance against level and change.
        extra_steps: steps the online call produces beyond the ``horizon`` asked for (step 0
            is the sample in progress at ``now``, so a window that reaches
            ``now + horizon * step`` may touch one sample more); windows get exactly H.
        offset_decay: how the current level carries forward: 1.0 adds the analog's growth
            to the current level (unbounded demand that scales, e.g. CPU); below 1 follows
            the analog's own future plus the gap to now fading by this factor per step
            (bounded series whose joint states matter: server power).
        group_corr: None (every series follows one analog per path, jointly) or a
            correlation of step changes (0..1): series linked at or above it form a group
            (:func:`correlated_groups`), each group gets its own analogs and its own origin
            per path. Synchronous servers stay joint while independent ones combine in ways
            the past may not have shown together — the upper tail of a row of independent
            inference pods, which one origin per path under-covers.
        max_growth: paths never exceed this multiple of the largest value in the window
            (0 disables): growth learnt from near-zero origins does not multiply a burst.
    """

    name = "growth-bootstrap"
    predictor_cls = GrowthBootstrapPredictor
    default_num_samples = 256
    defaults = {
        "window_s": 14 * 86400.0,
        "season_s": 86400.0,
        "phase_halfwidth_s": 3600.0,
        "min_pool": 30,
        "space": "log",
        "neighbours": 0.1,
        "phase_weight": 0.5,
        "extra_steps": 1,
        "offset_decay": 1.0,
        "group_corr": None,
        "max_growth": 2.0,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        p = self.params
        if p["space"] not in {"log", "linear"}:
            raise ConfigError(f"space must be 'log' or 'linear', got {p['space']!r}")
        if not 0.0 <= float(p["offset_decay"]) <= 1.0:
            raise ConfigError(f"offset_decay must be in [0, 1], got {p['offset_decay']}")
        if p["group_corr"] is not None and not -1.0 <= float(p["group_corr"]) <= 1.0:
            raise ConfigError(f"group_corr must be None or in [-1, 1], got {p['group_corr']}")
        if float(p["max_growth"]) < 0:
            raise ConfigError(f"max_growth must be >= 0 (0 disables), got {p['max_growth']}")
        if int(p["extra_steps"]) < 0 or int(p["min_pool"]) < 1:
            raise ConfigError(f"extra_steps must be >= 0 and min_pool >= 1, got "
                              f"{p['extra_steps']} and {p['min_pool']}")
