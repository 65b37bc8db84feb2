"""POLCA thresholds, cap levels and hysteresis as documented in policies/polca.py."""

from __future__ import annotations

import numpy as np
import pytest

from policies import registry
from tests.policies.conftest import power_inputs


def _inputs(row_w=None):
    """A row of 4 servers (s1, s3 low priority), 300 W nameplate; ``row_w`` observed last."""
    return power_inputs(row_w=row_w, servers=4, budget_w=1000.0, p_max_w=300.0, p_idle_w=100.0,
                        low_priority=[False, True, False, True], step_s=1.0, delay_s=40.0)


def _polca(**kw):
    return registry.create("polca", "power", **kw)


@pytest.mark.parametrize(("fraction", "current", "expected"), [
    (0.80, 0, 0),   # engage only above 80 %
    (0.81, 0, 1),
    (0.89, 0, 1),   # level 2 only above 89 %
    (0.895, 0, 2),
    (0.999, 1, 2),
    (1.00, 0, 3),   # brake at 100 %
    (0.76, 1, 1),   # hysteresis: level 1 holds down to 75 %
    (0.74, 1, 0),
    (0.85, 2, 2),   # level 2 holds down to 84 %
    (0.83, 2, 1),   # ... then level 1 still holds (>= 75 %)
    (0.70, 2, 0),   # several levels released at once
    (0.96, 3, 3),   # brake holds down to 95 %
    (0.94, 3, 2),
    (0.80, 3, 1),
])
def test_levels_and_hysteresis(fraction, current, expected):
    assert _polca().level(fraction, current) == expected


def _decide(pol, row_w, level):
    return pol.decide(*_inputs(row_w), None, 0.0, memory={"level": level})


def test_cap_levels_by_priority():
    pol = _polca()
    d0 = pol.decide(*_inputs(), None, 0.0)  # nothing observed yet: row 0 W
    assert np.isinf(d0.action["caps"]).all() and d0.state == {"level": 0}
    d1 = _decide(pol, 850.0, 0)
    np.testing.assert_allclose(d1.action["caps"], [np.inf, 225.0, np.inf, 225.0])
    d2 = _decide(pol, 900.0, 0)
    np.testing.assert_allclose(d2.action["caps"], [255.0, 180.0, 255.0, 180.0])
    d3 = _decide(pol, 1000.0, 2)
    np.testing.assert_allclose(d3.action["caps"], [150.0] * 4)
    assert d3.state == {"level": 3} and d3.details["level"] == 3


def test_t2_follows_t1_and_sweep():
    assert _polca(t1=0.7).params["t2"] == pytest.approx(0.79)
    cls = registry.get("polca", "power")
    assert cls.sweep_param == "t1" and 0.8 in cls.sweep_grid
    with pytest.raises(ValueError, match="t1 <= t2"):
        _polca(t1=0.95, t2=0.9)
    with pytest.raises(ValueError, match="cap2_low"):
        _polca(cap2_low=1.5)
