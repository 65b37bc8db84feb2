"""The ``serverless`` scenario's contract: warm instances per function, step by step.

:class:`Spec` holds the functions and their constants, :class:`Observation` what is known at
the start of step ``t`` (required concurrency of every past step, the last invocations and
warm counts), :class:`Desired` the warm instances per function. The replay
(``traces/replay/serverless.py``, vectorised over every function) and the daemon (one
function per target) build the same types and hand them to :func:`policies.pipeline.step`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.forecast import Forecast
from policies.base import Decision
from policies.scenarios import policy_horizon, stepped_history

NAME = "serverless"


@dataclass(frozen=True, slots=True)
class Spec:
    """The functions of a run.

    Attributes:
        entities: F function ids.
        duration_ms: ``(F,)`` mean execution time.
        memory_mb: ``(F,)`` memory of one instance.
        step_s: seconds per step.
        peak_concurrency: hindsight ``(F,)`` for ``reads_future`` policies (replay only).

    """

    entities: tuple[str, ...]
    duration_ms: np.ndarray
    memory_mb: np.ndarray
    step_s: float
    peak_concurrency: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.entities)
        if np.shape(self.duration_ms) != (n,) or np.shape(self.memory_mb) != (n,):
            raise ValueError(f"serverless spec: duration_ms and memory_mb need shape ({n},)")
        if not self.step_s > 0:
            raise ValueError(f"serverless step_s must be > 0, got {self.step_s}")


@dataclass(frozen=True)
class Desired:
    """Warm instances per function, ``(F,)`` int64."""

    warm: np.ndarray

    def as_dict(self, spec: Spec) -> dict[str, Any]:
        """Return the setting as stored and served: ``{"warm": n}`` for one function, or by id."""
        if len(spec.entities) == 1:
            return {"warm": int(self.warm[0])}
        return {"warm": {e: int(w) for e, w in zip(spec.entities, self.warm, strict=True)}}


@dataclass(frozen=True)  # no slots: a frozen slotted init costs more per decision
class Observation:
    """What is known at the start of step ``t``.

    Attributes:
        t: steps observed so far (rows of ``history``).
        history: ``(t, F)`` required concurrency of every past step (read only).
        invocations_last: ``(F,)`` invocations of the last step.
        warm_last: ``(F,)`` warm instances of the last step.
        start_s: time the step being decided begins.
        current: the setting last asked for (None before any).
        truth: hindsight, this step's true concurrency as a Forecast (replay only).

    """

    t: int
    history: np.ndarray
    invocations_last: np.ndarray
    warm_last: np.ndarray
    start_s: float
    current: Desired | None = None
    truth: Forecast | None = None


def desired_from(setting: dict[str, Any] | None, spec: Spec) -> Desired | None:
    """Read a stored setting back (None when there is none)."""
    if not setting or "warm" not in setting:
        return None
    raw = setting["warm"]
    if isinstance(raw, dict):
        return Desired(np.array([int(raw.get(e, 0)) for e in spec.entities], dtype=np.int64))
    return Desired(np.full(len(spec.entities), int(raw), dtype=np.int64))


#: what the forecaster reads (the concurrency history), and how far it forecasts
history = stepped_history
horizon = policy_horizon


def apply(decision: Decision, spec: Spec, current: Desired | None) -> Desired | None:
    """Validate a decision into warm counts (rounded up); invalid keeps ``current``.

    Raises:
        ValueError: a valid decision whose ``warm`` is not ``(F,)`` finite counts >= 0.

    """
    if not decision.valid:
        return current
    n_f = len(spec.entities)
    try:
        w = np.asarray(decision.action["warm"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"a valid serverless decision needs {{'warm': one count per function}}, got "
            f"{decision.action!r}") from exc
    if w.shape != (n_f,) or not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError(f"'warm' of shape {w.shape}: need ({n_f},) finite counts >= 0")
    return Desired(np.ceil(w).astype(np.int64))


def required_concurrency(invocations: np.ndarray, duration_ms: np.ndarray,
                         step_s: float) -> np.ndarray:
    """Compute the required concurrency of the reference model.

    Args:
        invocations: invocations per step, (T, F).
        duration_ms: mean execution time per function, (F,).
        step_s: step length in seconds.

    Returns:
        ``c`` (T, F) int64: 0 where no invocation, else ``max(1, ceil(n·d/Δ))``.

    """
    n = np.asarray(invocations, dtype=np.float64)  # (T, F)
    # n·d is an exact integer for the integer-millisecond durations of the Azure trace, so
    # ceil sees no rounding noise at exact multiples of the step
    need = np.ceil(n * np.asarray(duration_ms, dtype=np.float64)[None, :] / (step_s * 1000.0))
    c = np.where(n > 0, np.maximum(1.0, need), 0.0)
    return c.astype(np.int64)


def recent_max(history: np.ndarray, k: np.ndarray | int) -> np.ndarray:
    """Per-function max over the last ``k_f`` rows of ``history`` (0 where ``k_f <= 0``).

    ``recent_max(h, K)`` is the fixed keep-alive's ``max(c_{t-1}, ..., c_{t-K})``.

    Args:
        history: (t, F) past values (non-negative).
        k: (F,) or scalar window lengths in steps.

    Returns:
        (F,) int64 maxima.

    """
    t, n_f = history.shape
    k = np.broadcast_to(np.asarray(k, dtype=np.int64), (n_f,))
    depth = int(min(t, k.max(initial=0)))
    if depth <= 0:
        return np.zeros(n_f, dtype=np.int64)
    if (k == k[0]).all():  # one window for all: a plain max
        return history[t - depth:].max(axis=0).astype(np.int64)
    # running max from the newest row backwards: rev[j, f] = max of the newest j+1 rows
    rev = np.maximum.accumulate(history[t - depth:][::-1], axis=0)  # (depth, F)
    row = np.clip(np.minimum(k, depth) - 1, 0, None)
    return np.where(k > 0, rev[row, np.arange(n_f)], 0).astype(np.int64)
