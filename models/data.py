"""Multi-indicator series and the windows models train and predict on.

A :class:`Series` is one entity's history in wide form: ``values (T, M)`` with one
column per indicator and ``ts (T,)`` unix seconds. Estimators train on a list of Series;
predictors forecast from the end of each Series (or from explicit context windows in the
batched evaluation path, :meth:`models.base.Predictor.predict_windows`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from common.errors import InputError, NoDataError


@dataclass
class Series:
    """One entity's multi-indicator history.

    Attributes:
        values: ``(T, M)`` float array, one column per indicator; NaN marks a missing value.
        ts: ``(T,)`` unix seconds of each row, increasing.
        indicators: the M indicator (metric) names, in column order.
        entity: the entity id (used in error messages and in the Forecast's info).
        step: seconds between rows; None infers it from the median gap of ``ts``.

    """

    values: np.ndarray
    ts: np.ndarray
    indicators: tuple[str, ...]
    entity: str = "entity"
    step: float | None = None

    def __post_init__(self) -> None:
        v = np.asarray(self.values, dtype=np.float64)
        if v.ndim == 1:
            v = v[:, None]
        if v.ndim != 2:
            raise InputError(f"values must be (T, M), got shape {v.shape}", where=self.entity)
        t = np.asarray(self.ts, dtype=np.float64)
        if t.shape != (v.shape[0],):
            raise InputError(
                f"ts has shape {t.shape} but values has {v.shape[0]} rows", where=self.entity
            )
        if len(self.indicators) != v.shape[1]:
            raise InputError(
                f"{v.shape[1]} value columns but {len(self.indicators)} indicator names",
                where=self.entity,
            )
        if t.size > 1 and not np.all(np.diff(t) > 0):
            raise InputError("timestamps must be strictly increasing", where=self.entity)
        self.values, self.ts, self.indicators = v, t, tuple(self.indicators)
        if self.step is None:
            self.step = float(np.median(np.diff(t))) if t.size > 1 else 1.0

    def __len__(self) -> int:
        return self.values.shape[0]

    def select(self, indicators: Sequence[str]) -> Series:
        """Return the same series restricted to (and ordered as) ``indicators``.

        Raises:
            InputError: an indicator the caller needs is not in this series.

        """
        missing = [n for n in indicators if n not in self.indicators]
        if missing:
            raise InputError(
                f"indicator(s) {missing} missing; this series has {list(self.indicators)} "
                "(forecast with the indicators the model was trained on)",
                where=f"series {self.entity!r}",
            )
        idx = [self.indicators.index(n) for n in indicators]
        return Series(self.values[:, idx], self.ts, tuple(indicators), self.entity, self.step)


def as_series_list(data: Series | Sequence[Series] | None) -> list[Series]:
    """Normalise the ``train``/``validation`` argument to a list (None -> empty list)."""
    if data is None:
        return []
    if isinstance(data, Series):
        return [data]
    return list(data)


def check_training(series: list[Series], indicators: tuple[str, ...] | None, what: str) -> None:
    """Refuse training data a model cannot learn from, with a message saying where.

    Raises:
        NoDataError: no series at all.
        InputError: indicators differ between series, or values are NaN/Inf.

    """
    if not series:
        raise NoDataError(f"no {what} series given")
    names = indicators or series[0].indicators
    for s in series:
        if s.indicators != names:
            raise InputError(
                f"indicators {list(s.indicators)} differ from {list(names)}; "
                "all series must share the same indicators in the same order",
                where=f"{what} series {s.entity!r}",
            )
        bad = ~np.isfinite(s.values)
        if bad.any():
            row, col = np.argwhere(bad)[0]
            raise InputError(
                f"NaN or Inf value (fill or drop missing values before training; "
                f"{int(bad.sum())} such values)",
                where=f"{what} series {s.entity!r} row {row}, indicator {s.indicators[col]!r}",
            )


def make_windows(
    series: list[Series], context: int, horizon: int, stride: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (context, target) window of the given series.

    Returns:
        ``x (N, L, M)`` contexts, ``y (N, H, M)`` targets, ``t (N, L + H)`` unix seconds
        of the context and target rows.

    Raises:
        NoDataError: no series is long enough for a single window.

    """
    xs, ys, ts = [], [], []
    for s in series:
        n = len(s) - context - horizon + 1
        if n <= 0:
            continue
        starts = np.arange(0, n, stride)
        idx = starts[:, None] + np.arange(context + horizon)[None, :]  # (N, L + H)
        w = s.values[idx]  # (N, L + H, M)
        xs.append(w[:, :context])
        ys.append(w[:, context:])
        ts.append(s.ts[idx])
    if not xs:
        longest = max((len(s) for s in series), default=0)
        raise NoDataError(
            f"no series is long enough for one window of context {context} + horizon "
            f"{horizon} rows (longest has {longest}); use a shorter --context or more data"
        )
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(ts)


def window_entities(series: list[Series], context: int, horizon: int) -> list[str]:
    """Entity id of each window :func:`make_windows` (stride 1) returns, in its order."""
    return [s.entity for s in series for _ in range(max(len(s) - context - horizon + 1, 0))]


def calendar_features(ts: np.ndarray) -> np.ndarray:
    """Time-of-day and day-of-week as sin/cos pairs.

    Args:
        ts: unix seconds, any shape ``(...)``.

    Returns:
        ``(..., 4)``: sin/cos of the time of day and of the day of the week (UTC).

    """
    day = 86400.0
    tod = np.mod(ts, day) / day
    dow = np.mod(np.floor(ts / day) + 3.0, 7.0) / 7.0  # 1970-01-01 was a Thursday; Monday = 0
    two_pi = 2.0 * np.pi
    return np.stack(
        [np.sin(two_pi * tod), np.cos(two_pi * tod), np.sin(two_pi * dow), np.cos(two_pi * dow)],
        axis=-1,
    )
