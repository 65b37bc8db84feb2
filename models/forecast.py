"""The Forecast: the only thing decisions read.

A Forecast holds joint sample paths ``[samples, horizon, indicators]``; ``mean``,
``median`` and ``quantile(q)`` are computed on first use and cached. Any model,
baseline or fallback produces one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(eq=False)
class Forecast:
    """Joint predictive samples for one entity.

    Attributes:
        samples: array ``(S, H, M)`` of sample paths: S samples, H horizon steps, M indicators.
        start: unix seconds of the first forecast step.
        step: seconds between forecast steps.
        indicators: names of the M indicators (metric names), in order.
        model: name of the model that produced it (``"fallback:<name>"`` for a fallback).
        info: free-form details (e.g. why a fallback was used).

    """

    samples: np.ndarray
    start: float
    step: float
    indicators: tuple[str, ...]
    model: str = "unknown"
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        s = np.asarray(self.samples, dtype=np.float64)
        if s.ndim != 3:
            raise ValueError(f"Forecast.samples must be (S, H, M), got shape {s.shape}")
        if s.shape[2] != len(self.indicators):
            raise ValueError(
                f"Forecast has {s.shape[2]} indicators in samples but {len(self.indicators)} names"
            )
        if not np.all(np.isfinite(s)):
            raise ValueError("Forecast.samples contains NaN or Inf")
        self.samples = s
        self.indicators = tuple(self.indicators)

    @property
    def num_samples(self) -> int:
        """Number of sample paths S."""
        return self.samples.shape[0]

    @property
    def horizon(self) -> int:
        """Number of forecast steps H."""
        return self.samples.shape[1]

    @cached_property
    def mean(self) -> np.ndarray:
        """Mean per step and indicator, ``(H, M)``."""
        return self.samples.mean(axis=0)

    @cached_property
    def median(self) -> np.ndarray:
        """Median per step and indicator, ``(H, M)``."""
        return self.quantile(0.5)

    def quantile(self, q: float) -> np.ndarray:
        """Quantile ``q`` in [0, 1] per step and indicator, ``(H, M)``; cached per q."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile level must be in [0, 1], got {q}")
        cache = self.__dict__.setdefault("_quantiles", {})
        if q not in cache:
            cache[q] = np.quantile(self.samples, q, axis=0)
        return cache[q]

    def indicator(self, name: str) -> np.ndarray:
        """Return the samples of one indicator, ``(S, H)``."""
        try:
            j = self.indicators.index(name)
        except ValueError:
            raise KeyError(f"indicator {name!r} not in forecast {self.indicators}") from None
        return self.samples[:, :, j]

    def times(self) -> np.ndarray:
        """Return the unix seconds of each horizon step, ``(H,)``."""
        return self.start + self.step * np.arange(self.horizon)
