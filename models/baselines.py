"""Baseline forecasters: ``last``, ``window-mean``, ``seasonal-naive``, ``quantile-gbm``.

All produce samples ``(S, H, M)`` from deterministic, evenly spaced quantile levels
``(s + 0.5) / S`` of an empirical distribution, so their forecasts are repeatable.

* ``last``: the last value plus the empirical h-step changes seen in the context window
  (naive forecast with bootstrapped residuals).
* ``window-mean``: the mean of the context window plus the window's deviations from it
  (the empirical distribution of the window, centred exactly on its mean).
* ``seasonal-naive``: the value one season earlier plus empirical residual quantiles of the
  same seasonal rule on the training data. ``season`` (rows) defaults to one day when a day
  fits in the context, else one hour, else one row (the resolved value is in the config).
* ``quantile-gbm``: scikit-learn ``HistGradientBoostingRegressor(loss="quantile")`` per
  indicator and quantile level on lag features, predicting the change from the last value;
  samples interpolate the predicted quantile function (linear, extended linearly past the
  outer levels; crossing quantiles are sorted).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from models.base import Estimator, Predictor, register_model
from models.data import Series, calendar_features, make_windows


def _levels(s: int) -> np.ndarray:
    return (np.arange(s) + 0.5) / s


# --------------------------------------------------------------------------- last


class LastPredictor(Predictor):
    """Last value plus the context window's empirical h-step changes."""

    def _sample(self, x, t, num_samples, rng):
        n, ell, m = x.shape
        h_len = self.prediction_length
        out = np.empty((n, num_samples, h_len, m))
        lv = _levels(num_samples)
        for h in range(h_len):
            k = h + 1
            if ell > k:
                dev = x[:, k:] - x[:, :-k]  # (N, L - k, M)
                q = np.quantile(dev, lv, axis=1)  # (S, N, M)
            else:
                q = np.zeros((num_samples, n, m))
            out[:, :, h] = x[:, -1][:, None] + np.moveaxis(q, 0, 1)
        return out


@register_model
class LastEstimator(Estimator):
    """The naive forecaster: repeat the last value; spread from recent changes."""

    name = "last"
    predictor_cls = LastPredictor

    def _train(self, train, validation):
        return self.predictor_cls(self.base_config(train[0].indicators, train[0].step))


# --------------------------------------------------------------------------- window mean


class WindowMeanPredictor(Predictor):
    """Mean of the context window; samples from the window's empirical distribution."""

    def _sample(self, x, t, num_samples, rng):
        mean = x.mean(axis=1)  # (N, M)
        q = np.quantile(x - mean[:, None], _levels(num_samples), axis=1)  # (S, N, M)
        q -= q.mean(axis=0, keepdims=True)  # sample mean == window mean exactly
        s = mean[None] + q  # (S, N, M)
        s = np.moveaxis(s, 0, 1)[:, :, None, :]  # (N, S, 1, M)
        return np.repeat(s, self.prediction_length, axis=2)


@register_model
class WindowMeanEstimator(Estimator):
    """Mean of the last ``context_length`` rows."""

    name = "window-mean"
    predictor_cls = WindowMeanPredictor

    def _train(self, train, validation):
        return self.predictor_cls(self.base_config(train[0].indicators, train[0].step))


# --------------------------------------------------------------------------- seasonal naive


def resolve_season(season: int | None, step_s: float, context: int) -> int:
    """Season length in rows: given, else a day, an hour or 1 row, the longest that fits."""
    if season is not None:
        return int(season)
    for period in (86400.0, 3600.0):
        rows = int(round(period / step_s))
        if 1 <= rows <= context and abs(rows * step_s - period) < 1e-6 * period + 1e-9:
            return rows
    return 1


class SeasonalNaivePredictor(Predictor):
    """Value one season back, plus training residual quantiles (state ``resid (H, S', M)``)."""

    def _sample(self, x, t, num_samples, rng):
        n, ell, m = x.shape
        season = int(self.config["season"])
        h_len = self.prediction_length
        resid = self.state["resid"]  # (H, R, M) sorted residual quantiles
        out = np.empty((n, num_samples, h_len, m))
        lv = _levels(num_samples)
        for h in range(h_len):
            k = (h // season + 1) * season  # rows back from the target
            src = ell - k + h
            point = x[:, src]  # (N, M)
            grid = np.linspace(0, 1, resid.shape[1])
            q = np.stack([np.interp(lv, grid, resid[h, :, j]) for j in range(m)], axis=-1)
            out[:, :, h] = point[:, None] + q[None]
        return out


@register_model
class SeasonalNaiveEstimator(Estimator):
    """Seasonal naive with empirical residual quantiles.

    Params:
        season: season length in rows (None: a day, else an hour, else 1, that fits in
            the context).
    """

    name = "seasonal-naive"
    predictor_cls = SeasonalNaivePredictor
    defaults = {"season": None}

    def _train(self, train, validation):
        step = float(train[0].step)
        season = resolve_season(self.params["season"], step, self.context_length)
        if season > self.context_length:
            from common.errors import ConfigError

            raise ConfigError(
                f"season of {season} rows does not fit in the context of "
                f"{self.context_length} rows; lengthen the context or shorten the season"
            )
        m = len(train[0].indicators)
        h_len = self.prediction_length
        n_q = 201
        resid = np.zeros((h_len, n_q, m))
        for h in range(h_len):
            k = (h // season + 1) * season
            r = np.concatenate([s.values[k:] - s.values[:-k] for s in train if len(s) > k])
            resid[h] = np.quantile(r, np.linspace(0, 1, n_q), axis=0)
        cfg = self.base_config(train[0].indicators, step)
        cfg["season"] = season
        return self.predictor_cls(cfg, {"resid": resid})


# --------------------------------------------------------------------------- quantile GBM

GBM_QUANTILES = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95)


def gbm_features(x: np.ndarray, t_future: np.ndarray, lags: int) -> np.ndarray:
    """Lag features of windows, relative to each indicator's last value.

    Args:
        x: ``(N, L, M)`` contexts.
        t_future: ``(N,)`` unix seconds of the target row.
        lags: how many of the latest rows to give as changes from the last value.

    Returns:
        ``(N, F)`` with, per indicator: last value, ``lags - 1`` recent changes, window
        mean, std, min and max relative to the last value; then 4 calendar features.

    """
    last = x[:, -1]  # (N, M)
    k = min(lags, x.shape[1])
    rec = (x[:, -k:-1] - last[:, None]).reshape(x.shape[0], -1)  # (N, (k-1)*M)
    stats = [x.mean(1) - last, x.std(1), x.min(1) - last, x.max(1) - last]
    return np.concatenate([last, rec, *stats, calendar_features(t_future)], axis=1)


class QuantileGBMPredictor(Predictor):
    """Quantile gradient boosting; state is the list of fitted models (pickled)."""

    def __init__(self, config, state=None):
        super().__init__(config, state)
        self.models: list[list[list[Any]]] = []  # [h][m][q]

    def _sample(self, x, t, num_samples, rng):
        n, ell, m = x.shape
        h_len = self.prediction_length
        qs = np.asarray(self.config["quantiles"])
        lv = _levels(num_samples)
        out = np.empty((n, num_samples, h_len, m))
        for h in range(h_len):
            feats = gbm_features(x, t[:, ell + h], int(self.config["lags"]))
            for j in range(m):
                pred = np.stack([mdl.predict(feats) for mdl in self.models[h][j]], axis=1)
                pred = np.sort(pred, axis=1)  # (N, Q) no crossing
                out[:, :, h, j] = x[:, -1, j][:, None] + _interp_quantiles(pred, qs, lv)
        return out

    def _save_state(self, folder: Path) -> None:
        (folder / "state.pkl").write_bytes(pickle.dumps(self.models, protocol=4))

    def _load_state(self, folder: Path) -> None:
        self.models = pickle.loads((folder / "state.pkl").read_bytes())

    def _state_equal(self, other) -> bool:
        # Pickled bytes are not stable across a round trip; compare the fitted trees.
        flat_a = [m for per_h in self.models for per_m in per_h for m in per_m]
        flat_b = [m for per_h in other.models for per_m in per_h for m in per_m]
        if len(flat_a) != len(flat_b):
            return False
        for a, b in zip(flat_a, flat_b, strict=True):
            if a.get_params() != b.get_params():
                return False
            if not np.array_equal(a._baseline_prediction, b._baseline_prediction):
                return False
            ta = [tree.nodes for it in a._predictors for tree in it]
            tb = [tree.nodes for it in b._predictors for tree in it]
            if len(ta) != len(tb):
                return False
            if not all(np.array_equal(x, y) for x, y in zip(ta, tb, strict=True)):
                return False
        return True


def _interp_quantiles(pred: np.ndarray, qs: np.ndarray, lv: np.ndarray) -> np.ndarray:
    """Quantile function at levels ``lv`` from knots ``pred (N, Q)`` at ``qs``; linear tails."""
    lo_slope = (pred[:, 1] - pred[:, 0]) / (qs[1] - qs[0])
    hi_slope = (pred[:, -1] - pred[:, -2]) / (qs[-1] - qs[-2])
    out = np.empty((pred.shape[0], lv.size))
    for i, u in enumerate(lv):
        if u < qs[0]:
            out[:, i] = pred[:, 0] - lo_slope * (qs[0] - u)
        elif u > qs[-1]:
            out[:, i] = pred[:, -1] + hi_slope * (u - qs[-1])
        else:
            k = min(int(np.searchsorted(qs, u, side="right")) - 1, qs.size - 2)
            w = (u - qs[k]) / (qs[k + 1] - qs[k])
            out[:, i] = pred[:, k] * (1 - w) + pred[:, k + 1] * w
    return out


@register_model
class QuantileGBMEstimator(Estimator):
    """Quantile gradient boosting on lag features (one model per step, indicator, level).

    Params:
        lags: latest rows given as individual features.
        max_iter: boosting iterations per model.
        max_leaf_nodes: leaves per tree.
        learning_rate: shrinkage.
        max_windows: training windows kept (evenly strided) to bound the fit time.
        quantiles: the levels fitted.
    """

    name = "quantile-gbm"
    predictor_cls = QuantileGBMPredictor
    defaults = {
        "lags": 6,
        "max_iter": 100,
        "max_leaf_nodes": 15,
        "learning_rate": 0.1,
        "max_windows": 4000,
        "quantiles": list(GBM_QUANTILES),
    }

    def _train(self, train: list[Series], validation: list[Series]):
        from sklearn.ensemble import HistGradientBoostingRegressor

        p = self.params
        x, y, t = make_windows(train, self.context_length, self.prediction_length)
        if x.shape[0] > p["max_windows"]:
            keep = np.linspace(0, x.shape[0] - 1, int(p["max_windows"])).astype(int)
            x, y, t = x[keep], y[keep], t[keep]
        ell = self.context_length
        models = []
        total = self.prediction_length * y.shape[2] * len(p["quantiles"])
        done = 0
        self._report("quantile model", done, total)
        for h in range(self.prediction_length):
            feats = gbm_features(x, t[:, ell + h], int(p["lags"]))
            per_m = []
            for j in range(y.shape[2]):
                target = y[:, h, j] - x[:, -1, j]
                per_q = []
                for q in p["quantiles"]:
                    mdl = HistGradientBoostingRegressor(
                        loss="quantile",
                        quantile=float(q),
                        max_iter=int(p["max_iter"]),
                        max_leaf_nodes=int(p["max_leaf_nodes"]),
                        learning_rate=float(p["learning_rate"]),
                        early_stopping=False,
                        random_state=self.seed,
                    )
                    per_q.append(mdl.fit(feats, target))
                    done += 1
                    self._report("quantile model", done, total)
                per_m.append(per_q)
            models.append(per_m)
        pred = self.predictor_cls(self.base_config(train[0].indicators, train[0].step))
        pred.models = models
        return pred
