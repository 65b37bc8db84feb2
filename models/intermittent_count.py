"""``intermittent-count``: a hurdle model for per-step counts of sparse or dense entities.

An online model (:mod:`models.online`), the forecaster ``bayes`` is fed for ``serverless``
(each column a function's required concurrency per minute).

**Whether** an entity is active next step comes from the distribution of its idle time. With
``a`` idle steps since its last active step (0 when the latest step was active), the hazard
of activity next step is

    h_f(a) = (n_eq_f(a) + k * g_f(a)) / (n_ge_f(a) + k)

where ``n_ge_f(a)`` counts the entity's past idle runs that reached ``a`` steps and
``n_eq_f(a)`` those that ended right after ``a``: a Beta–Bernoulli posterior per age with
``k`` pseudo-observations whose prior mean ``g_f(a)`` is the entity's hazard over all ages
``>= a``, itself shrunk towards the entity's share of active steps (see
:meth:`HurdleStats.hazard`). A timer function firing every 10 minutes thus gets
``h(9) ~ 1`` and ``h(a) ~ 0`` elsewhere: the next invocation time is forecast, not just a
count. Ages beyond ``max_age`` share the last bin; an entity never active so far gets its
(shrunk, small) share of active steps.

**Calibrated by what happened.** The per-age posteriors are sharp where a function has few
idle runs: an age none of its runs ended at reads as a hazard near 0 even when, across
functions, such cells are invoked about once in a hundred. So each predicted hazard ``h``
(for an entity seen before) is scored against the next row, pooled over entities, in a
table of cells (octave of idle age ``a``: 0, 1-2, 3-6, 7-14, ...) × (``h`` on a log scale,
``calib_bins_per_decade`` bins per decade down to ``calib_floor``), and the forecast reads
the posterior mean of the cell, a Beta–Bernoulli with ``calib_k`` pseudo-observations
centred on ``h`` itself:

    h_cal = (events(cell) + calib_k * h) / (predictions(cell) + calib_k)

(hand-checked in ``tests/models/test_intermittent_calibration.py``). A cell with little
evidence keeps ``h``; one with much reads its realised frequency, so the warm-pool
policy's price ratio meets probabilities that mean what they say. On the 670-function day
this moved the arrivals caught at ages 5-60 minutes, where a long keep-alive beat
``bayes`` (``docs/serverless.md``). ``hazard_calibration=False`` gives the raw hazard.

**How many** when active: the empirical distribution of the entity's last ``count_window``
active values (overdispersion and level shifts included), read at a stratified quantile;
before any history, 1.

Step 0 is stratified: sample ``s`` sits at quantile ``u_s = (s + 0.5) / S`` of the
predictive law of each entity (the top ``h`` share of samples are the active ones, in
increasing count order), so rare arrivals are resolved (to ``1 / S``: 0.1 % with the default
1,024 samples) and a critical-fractile reading of the samples is exact up to ``1 / S``.
Later steps chain the hazard along each path with independent uniforms. Entities are read one
by one by the warm-pool policy, so the samples' cross-entity joint law (comonotone in step 0)
is not used.

Online, the predictor keeps the sufficient statistics between calls and folds in only the
rows appended since the last call (a history that does not extend the previous one resets
them), so a call costs O(F * (S * H + count_window)). The state (statistics, generator) is
plain data: numeric arrays, numbers and strings.
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
    history_names,
    history_row,
    history_tail,
    rng_state,
    set_rng_state,
)


class HurdleStats:
    """Sufficient statistics of ``F`` entities' idle runs and active counts.

    Args:
        config: the model's parameters (``max_age``, ``prior_k``, ``tail_k``,
            ``age_smooth``, ``use_octaves``, ``count_window``).
        f: number of entities (columns).

    """

    #: Arrays that make up the state (with ``t`` and ``last_row``).
    ARRAYS = ("age", "ge", "eq", "ge_o", "eq_o", "n_act", "buf", "n_buf", "cal_ev", "cal_n")
    #: Arrays a state saved before they existed may lack (they start empty).
    OPTIONAL = ("cal_ev", "cal_n")

    def __init__(self, config: dict[str, Any], f: int) -> None:
        self.max_age = int(config["max_age"])
        self.prior_k = float(config["prior_k"])
        tail_k = config.get("tail_k")
        self.tail_k = self.prior_k if tail_k is None else float(tail_k)
        self.age_smooth = float(config["age_smooth"])
        self.use_octaves = bool(config["use_octaves"])
        self.count_window = int(config["count_window"])
        self.calibrate = bool(config.get("hazard_calibration", False))
        self.calib_k = float(config.get("calib_k", 20.0))
        self.calib_bpd = float(config.get("calib_bins_per_decade", 2.0))
        self.calib_floor = float(config.get("calib_floor", 1e-6))
        a = self.max_age + 1
        self.t = 0  # rows absorbed
        self.last_row: np.ndarray | None = None  # the last absorbed row (clipped at 0)
        self.age = np.full(f, -1, dtype=np.int64)  # idle steps since last active; -1: never
        self.ge = np.zeros((f, a))  # idle runs that reached age a
        self.eq = np.zeros((f, a))  # idle runs that ended right after age a
        # the same per octave of age (0, 1-2, 3-6, 7-14, ...): a coarser level of the hierarchy
        self.octave = np.floor(np.log2(np.arange(a) + 1.0)).astype(np.int64)  # (A,)
        self.ge_o = np.zeros((f, int(self.octave[-1]) + 1))
        self.eq_o = np.zeros((f, int(self.octave[-1]) + 1))
        self.n_act = np.zeros(f)  # active steps per entity
        self.buf = np.zeros((f, self.count_window))  # last active values, ring buffer
        self.n_buf = np.zeros(f, dtype=np.int64)  # active values seen (for the ring position)
        # calibration table: (octave of age, log-hazard bin) -> predictions, events
        n_bins = max(1, int(np.ceil(-np.log10(self.calib_floor) * self.calib_bpd)))
        self.cal_n = np.zeros((self.ge_o.shape[1], n_bins))  # (O, B)
        self.cal_ev = np.zeros((self.ge_o.shape[1], n_bins))  # (O, B)
        self._raw: tuple[int, np.ndarray] | None = None  # (t, raw hazard at the current ages)

    def absorb(self, rows: np.ndarray) -> None:
        """Fold in rows ``(T, F)`` of non-negative values, oldest first."""
        f = rows.shape[1]
        fi = np.arange(f)
        for row in rows:  # (F,)
            active = row > 0
            seen = self.age >= 0
            if self.calibrate and seen.any():
                # what was (or would have been) forecast for this row, scored against it
                o, b = self._cell(self._raw_now()[seen], self.age[seen])
                np.add.at(self.cal_n, (o, b), 1.0)
                np.add.at(self.cal_ev, (o, b), active[seen].astype(np.float64))
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
            self.t += 1
        self.last_row = rows[-1].copy()

    def hazard(self, age: np.ndarray | None = None) -> np.ndarray:
        """Probability each entity is active in the next step, given its idle age.

        The raw hazard (:meth:`raw_hazard`), calibrated by the realised frequency of its cell
        when ``hazard_calibration`` is on (:meth:`calibrated`).

        Args:
            age: ``(F,)`` or ``(S, F)`` idle ages in steps (-1: never active); None uses the
                current ages.

        Returns:
            Array of the same shape as ``age``.

        """
        if age is None:
            raw, age = self._raw_now(), self.age
        else:
            raw = self.raw_hazard(age)
        return self.calibrated(raw, age) if self.calibrate else raw

    def _raw_now(self) -> np.ndarray:
        """Raw hazard at the current ages, computed once per absorbed row."""
        if self._raw is None or self._raw[0] != self.t:
            self._raw = (self.t, self.raw_hazard(self.age))
        return self._raw[1]

    def _cell(self, h: np.ndarray, age: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibration cell of hazards ``h`` at ages ``age`` (>= 0): (octave, log bin)."""
        o = self.octave[np.minimum(age, self.max_age)]
        lg = np.log10(np.clip(h, self.calib_floor, 1.0)) - np.log10(self.calib_floor)
        b = np.minimum((lg * self.calib_bpd).astype(np.int64), self.cal_n.shape[1] - 1)
        return o, b

    def calibrated(self, h: np.ndarray, age: np.ndarray) -> np.ndarray:
        """``(events(cell) + calib_k h) / (predictions(cell) + calib_k)``; ages < 0 keep ``h``.

        Args:
            h: raw hazards, any shape.
            age: idle ages of the same shape (-1: never active).

        """
        seen = age >= 0
        o, b = self._cell(h, np.maximum(age, 0))
        k = self.calib_k
        return np.where(seen, (self.cal_ev[o, b] + k * h) / (self.cal_n[o, b] + k), h)

    def raw_hazard(self, age: np.ndarray) -> np.ndarray:
        """Probability each entity is active in the next step from its own idle runs.

        A chain of Beta–Bernoulli posterior means, each the prior mean of the next: the
        entity's share of active steps so far ``r_f``; its hazard over all ages ``>= a``;
        its hazard over the octave of ages holding ``a`` (with ``use_octaves``); its hazard at
        exactly ``a`` (neighbours weighted by ``age_smooth``). An entity never active gets
        ``r_f`` (small and shrinking).

        Args:
            age: ``(F,)`` or ``(S, F)`` idle ages in steps (-1: never active).

        Returns:
            Array of the same shape as ``age``.

        """
        k, k2 = self.prior_k, self.tail_k
        pool = (self.n_act.sum() + 0.5) / (self.t * self.n_act.size + 1.0)
        rate = (self.n_act + pool) / (self.t + 1.0)  # (F,) share of active steps, shrunk
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

    def sample(self, rng: np.random.Generator, s: int,
               horizon: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(S, H, F)`` count paths (step 0 stratified) and return them with P(active)."""
        f = self.age.size
        out = np.zeros((s, horizon, f))
        age = self.age.copy()
        strat = (np.arange(s) + 0.5) / s  # (S,)
        hz0 = self.hazard()  # (F,) at the current ages
        for h in range(horizon):
            hz = hz0 if h == 0 else self.hazard(age)  # (F,) then (S, F)
            u = np.broadcast_to(strat[:, None], (s, f)) if h == 0 else rng.random((s, f))
            # the top `hz` share of quantiles are active; rescale them to [0, 1) for the count
            active = u > 1.0 - hz
            v = np.clip((u - (1.0 - hz)) / np.maximum(hz, 1e-12), 0.0, 1.0 - 1e-12)
            cnt = self._count_quantile(v)
            out[:, h, :] = np.where(active, cnt, 0.0)
            age = np.where(active, 0, np.where(age >= 0, age + 1, age))
        return out, hz0


class IntermittentCountPredictor(OnlinePredictor):
    """Hurdle forecasts of counts (see the module doc and :class:`IntermittentCountEstimator`)."""

    def reset(self) -> None:
        """Restart the generator from the seed and forget the statistics."""
        self.rng = np.random.default_rng(int(self.config.get("seed", 0)))
        self.stats: HurdleStats | None = None
        self._end: float | None = None  # ``now`` of the last call: where absorbed rows end

    def hazard(self, age: np.ndarray | None = None) -> np.ndarray:
        """P(active next step) of each entity of the online stream (:meth:`HurdleStats.hazard`).

        Raises:
            ValueError: nothing absorbed yet.

        """
        if self.stats is None:
            raise ValueError("intermittent-count has seen no history yet")
        return self.stats.hazard(age)

    # -- state -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Return the absorbed statistics and the generator as plain data (no pickle)."""
        st = self.stats
        out: dict[str, Any] = {"rng": rng_state(self.rng), "t": st.t if st else 0,
                               "end": self._end}
        if st is not None and st.last_row is not None:
            out["last_row"] = st.last_row.copy()
            out.update({k: getattr(st, k).copy() for k in HurdleStats.ARRAYS})
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the daemon between two decisions).

        Raises:
            ValueError: arrays whose shapes do not fit this model's ``max_age`` or
                ``count_window``.

        """
        set_rng_state(self.rng, state["rng"])
        last = state.get("last_row")
        if last is None:
            self.stats, self._end = None, None
            return
        st = HurdleStats(self.config, int(np.shape(last)[0]))
        for k in HurdleStats.ARRAYS:
            if k not in state and k in HurdleStats.OPTIONAL:
                continue  # a state saved before calibration: the table starts empty
            arr = np.asarray(state[k])
            if arr.shape != getattr(st, k).shape:
                raise ValueError(f"forecaster state {k!r} has shape {arr.shape}, want "
                                 f"{getattr(st, k).shape} (max_age, count_window or the "
                                 "calibration bins changed)")
            setattr(st, k, arr.astype(getattr(st, k).dtype))
        st.t, st.last_row = int(state["t"]), np.asarray(last, dtype=np.float64)
        self.stats, self._end = st, state.get("end")

    # -- online ------------------------------------------------------------------
    def _new_rows_from(self, history: Any, f: int, t_len: int, now: float,
                       step: float) -> int | None:
        """Index of the first row of ``history`` not absorbed yet (None: start afresh).

        By time when ``now`` moved on by whole steps since the last call (the daemon hands a
        window that slides), else by count (the replay hands the whole history so far); in
        both cases the last absorbed row must be where it is expected.
        """
        st = self.stats
        if st is None or st.last_row is None or st.last_row.shape[0] != f:
            return None
        if self._end is not None and step > 0:
            q = (now - float(self._end)) / step
            k = int(round(q))
            if k >= 1 and abs(q - k) < 1e-6 and t_len - 1 - k >= 0 and np.array_equal(
                np.maximum(history_row(history, t_len - 1 - k), 0.0), st.last_row
            ):
                return t_len - k
        if 1 <= st.t <= t_len and np.array_equal(
            np.maximum(history_row(history, st.t - 1), 0.0), st.last_row
        ):
            return st.t
        return None

    def forecast(self, history: Any, now: float, step: float, horizon: int) -> Forecast:
        """Forecast ``horizon`` steps of counts for every entity (column) of ``history``."""
        names = history_names(history)
        f = len(names)
        t_len = len(history)
        first_new = self._new_rows_from(history, f, t_len, now, step)
        if first_new is not None:  # fold in only the new rows (the usual call)
            if t_len > first_new:
                new, _ = as_matrix(history_tail(history, first_new))
                self.stats.absorb(np.maximum(new, 0.0))
        else:
            y, _ = as_matrix(history)  # (T, F)
            self.stats = HurdleStats(self.config, f)
            self.stats.absorb(np.maximum(y, 0.0))
        self._end = float(now)
        out, hz0 = self.stats.sample(self.rng, self.num_samples, int(horizon))
        return self._online_forecast(out, now, step, names, {"p_active": hz0})

    # -- windows -----------------------------------------------------------------
    def _sample(self, x: np.ndarray, t: np.ndarray, num_samples: int,
                rng: np.random.Generator) -> np.ndarray:
        """Each window ``x[i] (L, M)`` read as a whole history; ``(N, S, H, M)`` samples."""
        n, _, m = x.shape
        out = np.empty((n, num_samples, self.prediction_length, m))
        for i in range(n):
            st = HurdleStats(self.config, m)
            st.absorb(np.maximum(np.nan_to_num(x[i], nan=0.0, posinf=0.0, neginf=0.0), 0.0))
            out[i] = st.sample(rng, num_samples, self.prediction_length)[0]
        return out


@register_model
class IntermittentCountEstimator(OnlineEstimator):
    """Hurdle model: Bayesian idle-time hazard for activity, recent values for counts (online).

    Params:
        max_age: longest idle age tracked (steps).
        prior_k: pseudo-observations of the per-age posterior's prior.
        tail_k: pseudo-observations of the tail hazard's prior (None: ``prior_k``).
        age_smooth: weight of the neighbouring ages ``a - 1`` and ``a + 1`` in the per-age
            counts (a timer that jitters by a minute still reads as periodic).
        use_octaves: put a level between the exact age and the tail: the entity's hazard in
            the octave of ages holding ``a`` (0, 1-2, 3-6, 7-14, ...). A function with few idle
            runs then still shows that it is likelier to be invoked soon after an invocation
            than after an hour of silence.
        count_window: active values per entity kept for the count distribution.
        hazard_calibration: read each hazard through the pooled calibration table (module
            doc).
        calib_k: pseudo-observations of a calibration cell's prior (centred on the raw
            hazard).
        calib_bins_per_decade: log-hazard bins per decade of the calibration table.
        calib_floor: smallest hazard told apart by the table (lower ones share its first bin).
    """

    name = "intermittent-count"
    predictor_cls = IntermittentCountPredictor
    default_num_samples = 1024
    defaults = {
        "max_age": 1440,
        "prior_k": 2.0,
        "count_window": 20,
        "tail_k": None,
        "age_smooth": 1.0,
        "use_octaves": True,
        "hazard_calibration": True,
        "calib_k": 20.0,
        "calib_bins_per_decade": 2.0,
        "calib_floor": 1e-6,
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if int(self.params["max_age"]) < 1 or int(self.params["count_window"]) < 1:
            raise ConfigError(f"max_age and count_window must be >= 1, got "
                              f"{self.params['max_age']} and {self.params['count_window']}")
        p = self.params
        if not (float(p["calib_k"]) > 0 and float(p["calib_bins_per_decade"]) > 0
                and 0 < float(p["calib_floor"]) < 1):
            raise ConfigError(
                "intermittent-count: calib_k and calib_bins_per_decade must be > 0 and "
                f"calib_floor in (0, 1), got {p['calib_k']}, {p['calib_bins_per_decade']} "
                f"and {p['calib_floor']}")
