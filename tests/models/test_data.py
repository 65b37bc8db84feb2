"""Windowing helpers of models.data."""

from __future__ import annotations

import numpy as np

from models.data import Series, make_windows, window_entities


def test_window_entities_follow_make_windows_order():
    a = Series(np.arange(5.0), np.arange(5.0), ("v",), "a")  # 5 rows: 3 windows of 2 + 1
    b = Series(np.arange(3.0), np.arange(3.0), ("v",), "b")  # 3 rows: 1 window
    c = Series(np.arange(2.0), np.arange(2.0), ("v",), "c")  # too short: none
    x, y, _ = make_windows([a, b, c], 2, 1)
    ents = window_entities([a, b, c], 2, 1)
    assert ents == ["a", "a", "a", "b"]
    assert len(ents) == x.shape[0]
    assert y[-1, 0, 0] == 2.0  # the last window is b's: its target is b's third row
