"""Forecasters as policies call them: ``forecaster(history, now, step, horizon) -> Forecast``.

Every forecaster is a registered model of :mod:`models` (the one Estimator -> Predictor ->
Forecast API); this module only adapts a model to the replay forecaster hook (see
:mod:`traces.replay.base`) that the decision path (:mod:`policies.pipeline`) calls, where
``history`` holds only data up to ``now`` (array ``(T,)``/``(T, M)`` or a DataFrame whose
columns name the indicators), ``step`` is the seconds between rows and ``horizon`` the number
of future steps wanted. Forecast step ``h`` is the ``h``-th sample after the history; its
interval starts at ``Forecast.start + h * step`` with ``start = now``.

* :class:`PredictorForecaster` — any predictor. An online model (``growth-bootstrap``,
  ``intermittent-count``: :class:`models.online.OnlinePredictor`) is called online on the
  whole history and its state (plain data) is handed through ``state_dict`` /
  ``load_state_dict``; a trained model forecasts from its last ``context_length`` rows.
* :class:`TruthForecaster` — perfect foresight written as a Forecast.

Which model feeds which scenario by default is :data:`policies.pipeline.DEFAULT_FORECASTERS`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.forecast import Forecast
from models.online import OnlinePredictor, as_matrix, history_names


class PredictorForecaster:
    """Any model (a :class:`models.base.Predictor`) as the forecaster a policy is fed.

    An online model (:class:`models.online.OnlinePredictor`) is called online: each call
    hands it the whole history so far and it folds in the new rows; its state is plain data
    (:meth:`state_dict` / :meth:`load_state_dict`, which the daemon stores between two
    decisions) and :meth:`restart` starts a new stream (a new replay run).

    A trained model forecasts from the last ``context_length`` rows of ``history``, taken to
    end at ``now`` (step 0 is the sample in progress). A univariate model given a history of M
    columns forecasts each column as its own entity, in one batch (a row's servers, a day's
    functions). Too little history, or a horizon beyond the model's, is a
    :class:`~common.errors.NoDataError`: the policy falls back and says so. Calls are seeded
    in sequence, so a replay is reproducible.
    """

    def __init__(self, predictor: Any, seed: int = 0, name: str | None = None) -> None:  # noqa: ANN401
        self.predictor = predictor
        self.online = isinstance(predictor, OnlinePredictor)
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
        (a history that differs from ``series`` is still forecast on the spot). An online
        model is not precomputed: it reads the history in order, once.
        """
        if self.online:
            return
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

    def restart(self) -> None:
        """Start a new stream: an online model forgets what it has seen (a new replay run)."""
        if self.online:
            self.predictor.reset()

    def state_dict(self) -> dict[str, Any]:
        """Return what the next call depends on, as plain data (the daemon stores it)."""
        return self.predictor.state_dict() if self.online else {"calls": self.calls}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`."""
        if self.online:
            self.predictor.load_state_dict(state)
        else:
            self.calls = int(state["calls"])

    def __call__(self, history: Any, now: float, step: float, horizon: int) -> Forecast:  # noqa: ANN401
        """Forecast ``horizon`` steps from ``now`` (see the class doc)."""
        from common.errors import NoDataError

        if self.online:
            return self.predictor.forecast(history, now, step, horizon)
        y, names = as_matrix(history)
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
        names = history_names(history)
        return Forecast(samples=self.y[idx][None], start=now, step=step, indicators=names,
                        model=self.name)
