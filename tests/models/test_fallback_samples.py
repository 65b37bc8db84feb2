"""The fallback forecaster's samples: quantiles of the h-step changes (or of the window).

``fallback_samples`` computes every lag's quantiles in a few array operations; these tests
hold it to the definition, one ``np.quantile`` per indicator and step, on random histories
with gaps, ties and short windows.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.base import NoDataError, fallback_samples


def by_definition(history: np.ndarray, horizon: int, num_samples: int, kind: str) -> np.ndarray:
    levels = (np.arange(num_samples) + 0.5) / num_samples
    out = np.empty((num_samples, horizon, history.shape[1]))
    for j in range(history.shape[1]):
        col = history[:, j][np.isfinite(history[:, j])]
        for h in range(horizon):
            if kind == "window-mean":
                centre, dev = col.mean(), col - col.mean()
            else:
                centre = col[-1]
                dev = col[h + 1 :] - col[: -(h + 1)] if col.size > h + 1 else np.zeros(1)
            out[:, h, j] = centre + np.quantile(dev, levels)
    return out


values = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.integers(-5, 5).map(float),  # ties
    st.just(np.nan),  # gaps
)


@settings(max_examples=200, deadline=None)
@given(
    history=st.integers(1, 60).flatmap(
        lambda t: st.integers(1, 3).flatmap(
            lambda m: arrays(np.float64, (t, m), elements=values)
        )
    ),
    horizon=st.integers(1, 25),
    num_samples=st.integers(1, 64),
    kind=st.sampled_from(["last", "window-mean"]),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_samples_are_the_quantiles_of_the_definition(history, horizon, num_samples, kind, dtype):
    history[-1] = np.where(np.isnan(history[-1]), 1.5, history[-1])  # one finite value each
    history = history.astype(dtype)  # float32 too: the changes are taken in the input's type
    got = fallback_samples(history, horizon, num_samples, kind)
    assert got.shape == (num_samples, horizon, history.shape[1])
    np.testing.assert_array_equal(got, by_definition(history, horizon, num_samples, kind))


def test_last_value_and_changes_by_hand():
    # changes of 1 step: +1, +2, -1 -> quantiles at 1/6, 1/2, 5/6 of [-1, 1, 2]
    hist = np.array([[0.0], [1.0], [3.0], [2.0]])
    s = fallback_samples(hist, horizon=4, num_samples=3, kind="last")
    np.testing.assert_allclose(s[:, 0, 0], 2.0 + np.array([-1 + 2 * (1 / 3), 1.0, 1 + 2 / 3]))
    # 3 steps: one change (+2), so no spread; 4 steps: longer than the history, spread 0
    np.testing.assert_array_equal(s[:, 2, 0], [4.0, 4.0, 4.0])
    np.testing.assert_array_equal(s[:, 3, 0], [2.0, 2.0, 2.0])


def test_an_indicator_without_a_finite_value_is_no_data():
    with pytest.raises(NoDataError, match="indicator 1"):
        fallback_samples(np.array([[1.0, np.nan], [2.0, np.nan]]), 2, 4)
