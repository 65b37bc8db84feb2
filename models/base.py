"""Estimator -> Predictor -> Forecast, the registry of models, and the per-series fallback.

* An :class:`Estimator` holds hyper-parameters and trains: ``fit(train, validation)``
  returns a :class:`Predictor`.
* A :class:`Predictor` forecasts (``predict`` from the end of each Series,
  ``predict_windows`` from explicit context windows in one batch), saves itself to a
  folder (``config.json`` carrying the format and package versions, plus its state) and
  loads back equal.
* Every prediction is a :class:`models.forecast.Forecast` or, where nothing can be said
  about an entity, a :class:`NoData` outcome. A window the model cannot use (too short,
  too many gaps) or a model failure gets the per-series fallback forecaster instead:
  ``Forecast.model == "fallback:<name>"`` and ``Forecast.info["reason"]`` says why.
* After training, the estimator recalibrates the predictive spread on the validation
  split where the central 90% interval misses its target (:mod:`models.calibration`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from common.errors import ConfigError, InputError, ModelError, NoDataError
from models.data import Series, as_series_list, check_training, make_windows
from models.forecast import Forecast
from models.progress import FitEvent, ProgressFn, report

log = logging.getLogger(__name__)

#: Version of the saved-predictor layout; bump when ``config.json`` or the state changes.
FORMAT_VERSION = 1

#: Fraction of a context window that may be missing (NaN) and still be gap-filled
#: (forward, then backward fill) for the model; more than this goes to the fallback.
MAX_MISSING_FRACTION = 0.5


@dataclass(frozen=True)
class NoData:
    """Typed outcome for an entity nothing can be forecast for (no finite value at all).

    Attributes:
        entity: the entity id.
        reason: why, naming the indicator(s).

    """

    entity: str
    reason: str


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("tidewise")
    except Exception:  # pragma: no cover - running from a source tree without install
        return "unknown"


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return obj


# --------------------------------------------------------------------------- fallback


def fill_gaps(x: np.ndarray) -> np.ndarray:
    """Forward- then backward-fill NaNs along time in ``x (L, M)``; all-NaN columns stay NaN."""
    out = x.copy()
    for j in range(out.shape[1]):
        col = out[:, j]
        ok = np.isfinite(col)
        if ok.all() or not ok.any():
            continue
        idx = np.where(ok, np.arange(col.size), 0)
        np.maximum.accumulate(idx, out=idx)
        filled = col[idx]
        first = int(np.argmax(ok))
        filled[:first] = col[first]
        out[:, j] = filled
    return out


def sorted_quantiles(a: np.ndarray, counts: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Quantiles at ``levels`` ``(S,)`` of the first ``counts[r]`` entries of each sorted row.

    ``a`` is ``(R, N)``, each row sorted ascending with its ``counts[r] >= 1`` values first.
    Returns ``(R, S)``: numpy's default (``linear``) method, computed as ``np.quantile`` does,
    so the figures are the same to the bit, in a few array operations instead of one
    ``np.quantile`` call per row.
    """
    last = counts[:, None] - 1
    pos = levels[None, :] * last
    lo = np.floor(pos).astype(np.intp)
    frac = pos - lo
    a_lo = np.take_along_axis(a, lo, axis=1)
    a_hi = np.take_along_axis(a, np.minimum(lo + 1, last), axis=1)
    d = a_hi - a_lo
    return np.where(frac >= 0.5, a_hi - d * (1 - frac), a_lo + d * frac)


def fallback_samples(
    history: np.ndarray, horizon: int, num_samples: int, kind: str = "last"
) -> np.ndarray:
    """Draw samples from the per-series fallback forecaster, never NaN.

    ``last``: the last finite value of each indicator plus the empirical h-step changes
    seen in the finite part of ``history`` (spread 0 with fewer than two values).
    ``window-mean``: the mean of the finite values plus their deviations from it.

    Args:
        history: ``(T, M)`` possibly with NaN; every column needs one finite value.
        horizon: H steps.
        num_samples: S.
        kind: ``"last"`` or ``"window-mean"``.

    Returns:
        ``(S, H, M)`` samples.

    """
    t, m = history.shape
    out = np.empty((num_samples, horizon, m))
    levels = (np.arange(num_samples) + 0.5) / num_samples
    lags = np.arange(1, horizon + 1)
    for j in range(m):
        col = history[:, j]
        col = col[np.isfinite(col)]
        n = col.size
        if n == 0:
            raise NoDataError(f"indicator {j} has no finite value")
        if kind == "window-mean":
            mu = col.mean()
            q = sorted_quantiles(np.sort(col - mu)[None], np.array([n]), levels)[0]
            out[:, :, j] = (mu + q)[:, None]
            continue
        # Every lag's changes at once: row h holds col[k + h + 1] - col[k] for the n - h - 1
        # valid k, then +inf (sorted last, never read); a lag longer than the history has
        # spread 0.
        counts = n - lags
        q = np.zeros((horizon, num_samples))
        ok = counts >= 1
        if ok.any():
            padded = np.concatenate([col, np.full(horizon, np.inf, dtype=col.dtype)])
            k = np.arange(n - 1)
            dev = np.sort(padded[k[None, :] + lags[ok][:, None]] - col[None, : n - 1], axis=1)
            q[ok] = sorted_quantiles(dev, counts[ok], levels)
        out[:, :, j] = col[-1] + q.T
    return out


# --------------------------------------------------------------------------- predictor


class Predictor:
    """A trained forecaster.

    Subclasses implement :meth:`_sample` (batched, finite inputs) and, when their state is
    not a dict of numpy arrays, :meth:`_save_state` / :meth:`_load_state` /
    :meth:`_state_equal`.

    Attributes:
        config: everything needed to rebuild the predictor (JSON-serialisable): at least
            ``context_length``, ``prediction_length`` (rows), ``indicators``,
            ``num_samples``, ``fallback``, ``seed`` and the model's hyper-parameters.
        calibration: per-indicator spread factors ``(M,)`` applied around the sample mean, or
            None (see :mod:`models.calibration`).
        fit_info: figures from training (seconds, epochs, validation loss, coverage).

    """

    model_name: ClassVar[str] = ""

    @property
    def reads_mask(self) -> bool:
        """True when :meth:`_sample` takes ``observed``, the mask of the imputed rows.

        Missing context rows are imputed (:func:`fill_gaps`) for every model; a model that
        reads the mask also knows which rows were imputed (``harmony`` takes it as an input
        feature), so a held value is not mistaken for a flat series.
        """
        return False

    def __init__(self, config: dict[str, Any], state: dict[str, np.ndarray] | None = None):
        self.config = dict(config)
        self.state: dict[str, np.ndarray] = dict(state or {})
        self.calibration: np.ndarray | None = None
        self.fit_info: dict[str, Any] = {}

    # -- properties --------------------------------------------------------------
    @property
    def context_length(self) -> int:
        """Rows of history the model reads."""
        return int(self.config["context_length"])

    @property
    def prediction_length(self) -> int:
        """Rows forecast ahead (H)."""
        return int(self.config["prediction_length"])

    @property
    def indicators(self) -> tuple[str, ...]:
        """Indicator names, in the column order the model expects."""
        return tuple(self.config["indicators"])

    @property
    def num_samples(self) -> int:
        """Samples per forecast (S)."""
        return int(self.config.get("num_samples", 100))

    # -- subclass API ----------------------------------------------------------
    def _sample(
        self, x: np.ndarray, t: np.ndarray, num_samples: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Draw samples for finite windows.

        A predictor whose :attr:`reads_mask` is True is called with ``observed=`` ``(N, L, M)``
        too: 1.0 where the context value was observed, 0.0 where it was imputed.

        Args:
            x: ``(N, L, M)`` finite context values (gaps imputed).
            t: ``(N, L + H)`` unix seconds of the context and target rows.
            num_samples: S.
            rng: the random generator to use (seeded per call for repeatability).

        Returns:
            ``(N, S, H, M)`` samples (may contain non-finite values; the caller falls back).

        """
        raise NotImplementedError

    # -- prediction --------------------------------------------------------------
    def predict_windows(
        self,
        x: np.ndarray,
        t: np.ndarray,
        *,
        entities: Sequence[str] | None = None,
        num_samples: int | None = None,
        seed: int | None = None,
        batch_size: int = 1024,
    ) -> list[Forecast | NoData]:
        """Forecast from explicit context windows, in batches.

        Args:
            x: ``(N, L', M)`` contexts (NaN = missing); ``L' > L`` keeps the last L rows,
                ``L' < L`` sends every window to the fallback.
            t: ``(N, L' + H)`` unix seconds of context and target rows.
            entities: N entity ids for the outcomes (default ``"0"``, ``"1"``, ...).
            num_samples: S (default: the predictor's ``num_samples``).
            seed: seed of the sampling noise (default: the predictor's ``seed``).
            batch_size: windows per model call.

        Returns:
            N outcomes, each a Forecast (samples ``(S, H, M)``) or a NoData.

        """
        x = np.asarray(x, dtype=np.float64)
        t = np.asarray(t, dtype=np.float64)
        n_ctx, h = self.context_length, self.prediction_length
        if x.ndim != 3 or x.shape[2] != len(self.indicators):
            raise InputError(
                f"context windows must be (N, L, {len(self.indicators)}) for indicators "
                f"{list(self.indicators)}, got shape {x.shape}"
            )
        if t.shape != (x.shape[0], x.shape[1] + h):
            raise InputError(
                f"timestamps must be (N, L + H) = {(x.shape[0], x.shape[1] + h)}, got {t.shape}"
            )
        n = x.shape[0]
        ents = [str(e) for e in entities] if entities is not None else [str(i) for i in range(n)]
        s = int(num_samples or self.num_samples)
        rng = np.random.default_rng(self.config.get("seed", 0) if seed is None else seed)
        out: list[Forecast | NoData | None] = [None] * n
        fallback = str(self.config.get("fallback", "last"))

        # Decide per window: model (after gap filling) or fallback, and why.
        reasons: dict[int, str] = {}
        model_idx: list[int] = []
        ready = np.empty((n, n_ctx, x.shape[2])) if x.shape[1] >= n_ctx else None
        masked = self.reads_mask
        observed = np.ones((n, n_ctx, x.shape[2])) if masked and ready is not None else None
        for i in range(n):
            xi = x[i]
            finite = np.isfinite(xi)
            dead = [self.indicators[j] for j in np.where(~finite.any(axis=0))[0]]
            if dead:
                out[i] = NoData(ents[i], f"no finite value for indicator(s) {dead}")
                continue
            if x.shape[1] < n_ctx:
                reasons[i] = f"history of {x.shape[1]} rows is shorter than the context {n_ctx}"
                continue
            win = xi[-n_ctx:]
            missing = 1.0 - np.isfinite(win).mean(axis=0)
            if (missing > MAX_MISSING_FRACTION).any():
                j = int(np.argmax(missing))
                reasons[i] = (
                    f"{missing[j]:.0%} of the context of indicator {self.indicators[j]!r} "
                    f"is missing (more than {MAX_MISSING_FRACTION:.0%})"
                )
                continue
            ready[i] = fill_gaps(win) if missing.any() else win
            if observed is not None and missing.any():
                observed[i] = np.isfinite(win)
            model_idx.append(i)

        t_model = t[:, -(n_ctx + h) :]
        for b in range(0, len(model_idx), batch_size):
            idx = np.asarray(model_idx[b : b + batch_size])
            try:
                if observed is not None:
                    samples = self._sample(ready[idx], t_model[idx], s, rng,
                                           observed=observed[idx])  # (B, S, H, M)
                else:
                    samples = self._sample(ready[idx], t_model[idx], s, rng)
            except Exception as exc:  # a model failure must not cost the whole batch
                log.warning("model %s failed on %d windows: %s", self.model_name, idx.size, exc)
                for i in idx:
                    reasons[int(i)] = f"model failed: {type(exc).__name__}: {exc}"
                continue
            if self.calibration is not None:
                from models.calibration import apply_spread

                samples = apply_spread(samples, self.calibration)
            for k, i in enumerate(idx):
                si = samples[k]
                if not np.all(np.isfinite(si)):
                    reasons[int(i)] = "model produced NaN or Inf samples"
                    continue
                out[i] = Forecast(
                    si,
                    start=float(t_model[i, n_ctx]),
                    step=float(t_model[i, n_ctx] - t_model[i, n_ctx - 1]) if n_ctx else 1.0,
                    indicators=self.indicators,
                    model=self.model_name,
                    info={"entity": ents[i]},
                )
        for i, why in reasons.items():
            hist = x[i][-max(n_ctx, 2) :]
            step = float(np.median(np.diff(t[i]))) if t.shape[1] > 1 else 1.0
            out[i] = Forecast(
                fallback_samples(hist, h, s, fallback),
                start=float(t[i, x.shape[1]]),
                step=step,
                indicators=self.indicators,
                model=f"fallback:{fallback}",
                info={"entity": ents[i], "reason": why, "model": self.model_name},
            )
        return out  # type: ignore[return-value]

    def predict_outcomes(
        self, series: Series | Sequence[Series], *, num_samples: int | None = None
    ) -> list[Forecast | NoData]:
        """Forecast the next H rows after the end of each series (a Forecast or a NoData each).

        Raises:
            InputError: a series lacks an indicator the model was trained on.

        """
        items = [s.select(self.indicators) for s in as_series_list(series)]
        outs: list[Forecast | NoData] = []
        for s in items:
            if len(s) == 0:
                outs.append(NoData(s.entity, "empty history"))
                continue
            x, t = self._last_window(s)
            outs.extend(self.predict_windows(x[None], t[None], entities=[s.entity],
                                             num_samples=num_samples))
        return outs

    def _last_window(self, s: Series) -> tuple[np.ndarray, np.ndarray]:
        """Return the context ``(k, M)`` and times ``(k + H,)`` of a forecast after ``s``."""
        k = min(len(s), self.context_length)
        fut = s.ts[-1] + s.step * np.arange(1, self.prediction_length + 1)
        return s.values[-k:], np.concatenate([s.ts[-k:], fut])

    def predict_batch(
        self, series: Series | Sequence[Series], *, num_samples: int | None = None
    ) -> list[Forecast | NoData]:
        """Like :meth:`predict_outcomes`, with the windows of equal length forecast together.

        One :meth:`predict_windows` call per window length (the model sees batches of up to
        1024 windows), where :meth:`predict_outcomes` makes one per series: the daemon
        forecasts every series each period. A model that does not sample (``last``,
        ``window-mean``…) gives the same forecasts either way; a sampling one (``harmony``)
        draws the batch's noise at once, so its draws differ, not their distribution.

        Raises:
            InputError: a series lacks an indicator the model was trained on.

        """
        items = [s.select(self.indicators) for s in as_series_list(series)]
        outs: list[Forecast | NoData | None] = [None] * len(items)
        by_length: dict[int, list[int]] = {}
        for i, s in enumerate(items):
            if len(s) == 0:
                outs[i] = NoData(s.entity, "empty history")
            else:
                by_length.setdefault(min(len(s), self.context_length), []).append(i)
        for idx in by_length.values():
            windows = [self._last_window(items[i]) for i in idx]
            x = np.stack([w[0] for w in windows])  # (B, k, M)
            t = np.stack([w[1] for w in windows])  # (B, k + H)
            got = self.predict_windows(x, t, entities=[items[i].entity for i in idx],
                                       num_samples=num_samples)
            for i, o in zip(idx, got, strict=True):
                outs[i] = o
        return outs  # type: ignore[return-value]

    def predict(
        self, series: Series | Sequence[Series], *, num_samples: int | None = None
    ) -> list[Forecast]:
        """Like :meth:`predict_outcomes`, but raise on an entity with no data.

        Raises:
            NoDataError: an entity has no finite value for some indicator.

        """
        outs = self.predict_outcomes(series, num_samples=num_samples)
        for o in outs:
            if isinstance(o, NoData):
                raise NoDataError(f"cannot forecast entity {o.entity!r}: {o.reason}")
        return outs  # type: ignore[return-value]

    # -- persistence ----------------------------------------------------------
    def _save_state(self, folder: Path) -> None:
        np.savez(folder / "state.npz", **self.state)

    def _load_state(self, folder: Path) -> None:
        with np.load(folder / "state.npz", allow_pickle=False) as z:
            self.state = {k: z[k] for k in z.files}

    def _state_equal(self, other: Predictor) -> bool:
        if self.state.keys() != other.state.keys():
            return False
        return all(np.array_equal(self.state[k], other.state[k]) for k in self.state)

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` and the state into ``folder`` (created if needed)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        doc = {
            "format_version": FORMAT_VERSION,
            "tidewise_version": _package_version(),
            "model": self.model_name,
            "config": _jsonable(self.config),
            "calibration": None if self.calibration is None else self.calibration.tolist(),
            "fit_info": _jsonable(self.fit_info),
        }
        self._save_state(folder)
        (folder / "config.json").write_text(json.dumps(doc, indent=2, allow_nan=False))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Predictor:
        """Load a predictor saved by :meth:`save` (any registered model).

        Raises:
            ModelError: the folder is not a saved predictor, was written by another format
                version, or names a model that is not registered.

        """
        folder = Path(folder)
        cfg_path = folder / "config.json"
        try:
            doc = json.loads(cfg_path.read_text())
        except FileNotFoundError:
            raise ModelError(f"{cfg_path}: not found; is {folder} a saved predictor?") from None
        except json.JSONDecodeError as exc:
            raise ModelError(f"{cfg_path}: invalid JSON ({exc})") from None
        if doc.get("format_version") != FORMAT_VERSION:
            raise ModelError(
                f"{cfg_path}: format_version {doc.get('format_version')!r}, this Tidewise "
                f"reads {FORMAT_VERSION}; retrain the model"
            )
        pred_cls = get_estimator_class(doc["model"]).predictor_cls
        pred = pred_cls(doc["config"])
        pred._load_state(folder)
        cal = doc.get("calibration")
        pred.calibration = None if cal is None else np.asarray(cal, dtype=np.float64)
        pred.fit_info = doc.get("fit_info", {})
        return pred

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        cal_eq = (self.calibration is None and other.calibration is None) or (
            self.calibration is not None
            and other.calibration is not None
            and np.array_equal(self.calibration, other.calibration)
        )
        return (
            json.dumps(_jsonable(self.config), sort_keys=True)
            == json.dumps(_jsonable(other.config), sort_keys=True)
            and cal_eq
            and self._state_equal(other)
        )

    __hash__ = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- estimator


class Estimator:
    """Hyper-parameters and training.

    Args:
        context_length: rows of history the model reads (L).
        prediction_length: rows forecast ahead (H).
        num_samples: samples per forecast (S).
        calibrate: recalibrate the spread on the validation split (when one is given).
        calibration_tolerance: recalibrate an indicator only when its validation coverage
            of the central 90% interval misses 0.9 by more than this (fraction).
        fallback: the per-series fallback forecaster, ``"last"`` or ``"window-mean"``.
        seed: seed of training and of sampling.
        **params: the model's own hyper-parameters (see the class's ``defaults``).

    """

    name: ClassVar[str] = ""
    predictor_cls: ClassVar[type[Predictor]] = Predictor
    defaults: ClassVar[dict[str, Any]] = {}
    #: False when training learns nothing from the data (only its indicators and step):
    #: one fitted predictor then serves every series of the same shape.
    learns_from_data: ClassVar[bool] = True

    def __init__(
        self,
        context_length: int,
        prediction_length: int = 1,
        *,
        num_samples: int = 100,
        calibrate: bool = True,
        calibration_tolerance: float = 0.02,
        fallback: str = "last",
        seed: int = 0,
        **params: Any,
    ) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ConfigError(
                f"model {self.name!r} has no parameter(s) {sorted(unknown)}; "
                f"known: {sorted(self.defaults)}"
            )
        if int(context_length) < 1 or int(prediction_length) < 1:
            raise ConfigError(
                f"context_length and prediction_length must be >= 1 rows, got "
                f"{context_length} and {prediction_length}"
            )
        if int(num_samples) < 2:
            raise ConfigError(f"num_samples must be >= 2, got {num_samples}")
        if fallback not in ("last", "window-mean"):
            raise ConfigError(f"fallback must be 'last' or 'window-mean', got {fallback!r}")
        self.context_length = int(context_length)
        self.prediction_length = int(prediction_length)
        self.num_samples = int(num_samples)
        self.calibrate = bool(calibrate)
        self.calibration_tolerance = float(calibration_tolerance)
        self.fallback = fallback
        self.seed = int(seed)
        self.params = {**self.defaults, **params}

    def base_config(self, indicators: tuple[str, ...], step: float) -> dict[str, Any]:
        """Return the config keys every predictor carries."""
        return {
            "context_length": self.context_length,
            "prediction_length": self.prediction_length,
            "indicators": list(indicators),
            "step": float(step),
            "num_samples": self.num_samples,
            "fallback": self.fallback,
            "seed": self.seed,
            **self.params,
        }

    def _train(self, train: list[Series], validation: list[Series]) -> Predictor:
        raise NotImplementedError

    #: the running fit's progress callback (set by :meth:`fit`; None outside a fit)
    _progress: ProgressFn | None = None

    def _report(self, stage: str, done: int, total: int, detail: str = "") -> None:
        """Tell the running fit's progress callback (if any) that a step is done."""
        report(self._progress, FitEvent(self.name, stage, int(done), int(total), detail))

    def fit(
        self,
        train: Series | Sequence[Series],
        validation: Series | Sequence[Series] | None = None,
        *,
        progress: ProgressFn | None = None,
    ) -> Predictor:
        """Train on ``train`` (early stopping / calibration on ``validation`` when given).

        ``progress`` is called with a :class:`models.progress.FitEvent` after each step of
        training (epochs, members, quantile models) and around the calibration pass.

        Raises:
            NoDataError: no training series, or none long enough for one window.
            InputError: series with NaN/Inf or inconsistent indicators.
            ModelError: training itself failed.

        """
        tr, va = as_series_list(train), as_series_list(validation)
        check_training(tr, None, "train")
        if va:
            check_training(va, tr[0].indicators, "validation")
        make_windows(tr, self.context_length, self.prediction_length, stride=10**9)  # length check
        t0 = time.perf_counter()
        self._progress = progress
        try:
            pred = self._train(tr, va)
        except (NoDataError, InputError, ConfigError):
            raise
        except Exception as exc:
            raise ModelError(f"training {self.name!r} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._progress = None
        pred.fit_info["train_seconds"] = round(time.perf_counter() - t0, 3)
        if self.calibrate and va:
            from models.calibration import calibrate_predictor

            report(progress, FitEvent(self.name, "calibration", 0, 1))
            try:
                calibrate_predictor(pred, va, tolerance=self.calibration_tolerance)
            except NoDataError as exc:
                pred.fit_info["calibration"] = {"skipped": str(exc)}
            report(progress, FitEvent(self.name, "calibration", 1, 1))
        return pred


# --------------------------------------------------------------------------- registry

_REGISTRY: dict[str, type[Estimator]] = {}
_BUILTIN_MODULES = (
    "models.baselines",
    "models.harmony",
    "models.growth_bootstrap",
    "models.intermittent_count",
)


def register_model(cls: type[Estimator]) -> type[Estimator]:
    """Class decorator adding an estimator under its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    cls.predictor_cls.model_name = cls.name
    return cls


def _import_builtins() -> None:
    import importlib

    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)


def available_models() -> list[str]:
    """Names of every registered model."""
    _import_builtins()
    return sorted(_REGISTRY)


def get_estimator_class(name: str) -> type[Estimator]:
    """Return the estimator class registered as ``name``.

    Raises:
        ConfigError: no such model (the message lists the known ones).

    """
    _import_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known models: {sorted(_REGISTRY)}") from None


def get_estimator(name: str, **kwargs: Any) -> Estimator:
    """Build an estimator of the model ``name`` with ``kwargs``."""
    return get_estimator_class(name)(**kwargs)


def load_predictor(folder: str | Path) -> Predictor:
    """Load any saved predictor (see :meth:`Predictor.load`)."""
    return Predictor.load(folder)
