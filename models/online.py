"""Online models: predictors that also forecast from a growing history and keep state.

Some models need no training loop: they read the history as it arrives and keep a little
state between calls (a resampling generator, sufficient statistics). They are registered
models like any other (:func:`models.base.register_model`), so ``tidewise evaluate``,
``tidewise replay --forecaster NAME`` and the daemon find them by name and score them
like any model; their :class:`OnlineEstimator` only records the indicators and the step
(``fit`` is trivial), and their :class:`OnlinePredictor` has two ways to forecast:

* ``predict`` / ``predict_windows`` (the :class:`~models.base.Predictor` API): each context
  window is read as a history of its own, with a fresh state and the call's seeded
  generator, so windows are independent and repeatable (evaluation, scoring);
* :meth:`OnlinePredictor.forecast` ``(history, now, step, horizon)``: the online call. It
  folds in the rows of ``history`` not seen yet (all of them when the history does not
  extend the previous one) and forecasts ``horizon`` steps from ``now``. Step ``h`` is the
  ``h``-th sample after the history, its interval starting at ``now + h * step`` (the sample
  in progress at ``now`` is step 0, as in the replay's piecewise-constant demand). ``history``
  holds data up to ``now`` only: an array ``(T,)`` / ``(T, M)`` or a DataFrame whose columns
  name the indicators (an array's columns are named ``demand`` for one, else ``0``, ``1``...).

The online state is plain data — :meth:`OnlinePredictor.state_dict` returns dicts, lists,
strings, numbers and numeric numpy arrays, which the daemon stores through
:mod:`policies.memory`'s JSON codec between two decisions, and which a saved predictor
writes as ``online_state.json``. :meth:`OnlinePredictor.load_state_dict` continues exactly
where the state was taken; :meth:`OnlinePredictor.reset` starts a fresh stream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from models.base import Estimator, Predictor, _jsonable
from models.data import Series
from models.forecast import Forecast

#: Name of the online state's file in a saved predictor folder.
STATE_FILE = "online_state.json"

#: Rows of a ``predict_windows`` context an online estimator reads by default.
DEFAULT_CONTEXT = 72


# --------------------------------------------------------------------------- history


def history_names(history: Any) -> tuple[str, ...]:
    """Return the indicator names of a history without converting its values."""
    cols = getattr(history, "columns", None)
    if cols is not None:
        return tuple(str(c) for c in cols)
    shape = np.shape(history)
    m = 1 if len(shape) == 1 else shape[1]
    return ("demand",) if m == 1 else tuple(str(j) for j in range(m))


def history_row(history: Any, i: int) -> np.ndarray:
    """Row ``i`` of a history as a float vector (NaN/Inf read as 0, as :func:`as_matrix`)."""
    r = history.iloc[i].to_numpy() if hasattr(history, "iloc") else history[i]
    return np.nan_to_num(np.atleast_1d(np.asarray(r, dtype=np.float64)), nan=0.0,
                         posinf=0.0, neginf=0.0)


def history_tail(history: Any, start: int) -> Any:
    """Rows ``start:`` of a history (array or DataFrame), not converted."""
    return history.iloc[start:] if hasattr(history, "iloc") else history[start:]


def as_matrix(history: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    """History as a float ``(T, M)`` matrix (NaN/Inf read as 0) plus indicator names.

    Raises:
        ValueError: a history that is not ``(T,)`` or ``(T, M)``.

    """
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


# --------------------------------------------------------------------------- generator state


def rng_state(rng: np.random.Generator) -> dict[str, Any]:
    """Return a generator's state as JSON-safe plain data (128-bit integers as strings)."""
    st = rng.bit_generator.state
    return {"bit_generator": st["bit_generator"],
            "state": {k: str(v) for k, v in st["state"].items()},
            "has_uint32": int(st.get("has_uint32", 0)), "uinteger": int(st.get("uinteger", 0))}


def set_rng_state(rng: np.random.Generator, saved: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    rng.bit_generator.state = {
        "bit_generator": saved["bit_generator"],
        "state": {k: int(v) for k, v in saved["state"].items()},
        "has_uint32": int(saved["has_uint32"]), "uinteger": int(saved["uinteger"]),
    }


# --------------------------------------------------------------------------- predictor


class OnlinePredictor(Predictor):
    """A predictor with an online ``forecast`` call and plain-data state (see the module doc).

    Subclasses implement :meth:`forecast`, :meth:`_sample` (the window path, stateless),
    :meth:`reset`, :meth:`state_dict` and :meth:`load_state_dict`.
    """

    def __init__(self, config: dict[str, Any], state: dict[str, np.ndarray] | None = None):
        super().__init__(config, state)
        self.reset()

    def reset(self) -> None:
        """Forget everything seen: the next :meth:`forecast` starts a fresh stream."""
        raise NotImplementedError

    def forecast(self, history: Any, now: float, step: float, horizon: int) -> Forecast:
        """Fold in the new rows of ``history`` and forecast ``horizon`` steps from ``now``."""
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Return what a later :meth:`forecast` depends on, as plain data."""
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict` (the daemon between two decisions)."""
        raise NotImplementedError

    def _online_forecast(self, samples: np.ndarray, now: float, step: float,
                         names: tuple[str, ...], info: dict[str, Any]) -> Forecast:
        """Wrap the online call's samples ``(S, H, M)``, spread-calibrated when fitted so."""
        if self.calibration is not None:
            from models.calibration import apply_spread

            samples = np.maximum(apply_spread(samples[None], self.calibration)[0], 0.0)
        return Forecast(samples=samples, start=now, step=step, indicators=names,
                        model=self.model_name, info=info)

    # -- persistence: the online state as JSON --------------------------------
    def _state_json(self) -> str:
        return json.dumps(_jsonable(self.state_dict()), sort_keys=True, allow_nan=False)

    def _save_state(self, folder: Path) -> None:
        (folder / STATE_FILE).write_text(self._state_json())

    def _load_state(self, folder: Path) -> None:
        path = folder / STATE_FILE
        if path.exists():
            self.load_state_dict(json.loads(path.read_text()))

    def _state_equal(self, other: Predictor) -> bool:
        return isinstance(other, OnlinePredictor) and self._state_json() == other._state_json()


class OnlineEstimator(Estimator):
    """Estimator of an online model: ``fit`` records indicators and step, nothing is learnt.

    Defaults differ from trained models': ``num_samples`` is the model's own
    (``default_num_samples``), calibration is off (a spread fitted on windows would not
    carry over to the online stream; ``calibrate=True`` applies it to both paths), and
    ``context_length`` (the rows a window of ``predict_windows`` holds; the online call reads
    the whole history) defaults to :data:`DEFAULT_CONTEXT`.
    """

    predictor_cls: ClassVar[type[Predictor]] = OnlinePredictor
    default_num_samples: ClassVar[int] = 100

    def __init__(self, context_length: int = DEFAULT_CONTEXT, prediction_length: int = 1, *,
                 num_samples: int | None = None, calibrate: bool = False,
                 **kwargs: Any) -> None:
        super().__init__(context_length, prediction_length,
                         num_samples=self.default_num_samples if num_samples is None
                         else num_samples, calibrate=calibrate, **kwargs)

    def start(self, indicators: tuple[str, ...] = ("demand",), step: float = 1.0) -> Predictor:
        """Return the predictor before any data (what ``fit`` returns, without data checks)."""
        return self.predictor_cls(self.base_config(tuple(indicators), step))

    def _train(self, train: list[Series], validation: list[Series]) -> Predictor:
        return self.start(train[0].indicators, float(train[0].step))


def online_predictor(name: str, seed: int = 0, **params: Any) -> OnlinePredictor:
    """Build the registered online model ``name`` with ``params``, before any data.

    Raises:
        ConfigError: no such model, a model that is not online, or an unknown parameter.

    """
    from common.errors import ConfigError
    from models.base import get_estimator_class

    cls = get_estimator_class(name)
    if not issubclass(cls, OnlineEstimator):
        raise ConfigError(f"model {name!r} is not an online model; it needs training (fit)")
    return cls(seed=seed, **params).start()  # type: ignore[return-value]


def window_step(t: np.ndarray, n_ctx: int) -> float:
    """Seconds between rows of one window's timestamps ``t (L + H,)`` (1.0 when unknown)."""
    if n_ctx >= 2:
        return float(t[n_ctx - 1] - t[n_ctx - 2])
    return float(t[1] - t[0]) if t.size > 1 else 1.0
