"""The serverless scenario's shared pieces: what keep-alive style policies compute."""

from __future__ import annotations

import numpy as np


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
