"""``intermittent-count``'s calibration of the hazard by what happened (hand-computed cases)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from common.errors import ConfigError
from models.base import _jsonable
from models.intermittent_count import HurdleStats, IntermittentCountEstimator
from models.online import online_predictor


def stats(f=1, **kw):
    conf = dict(IntermittentCountEstimator.defaults)
    conf.update(kw)
    return HurdleStats(conf, f)


def test_calibrated_hazard_by_hand():
    st = stats(calib_k=20.0, calib_bins_per_decade=2.0, calib_floor=1e-6)
    assert st.cal_n.shape == (11, 12)  # octaves of ages 0..1440; 6 decades x 2 bins
    # h = 0.001 at age 5: octave floor(log2 6) = 2; log bin floor((log10 0.001 + 6) * 2) = 6
    st.cal_n[2, 6], st.cal_ev[2, 6] = 180.0, 18.0
    h = np.array([0.001, 0.001, 0.001, 0.001])
    age = np.array([5, 3, 2, -1])  # ages 3..6 are octave 2; age 2 is octave 1
    out = st.calibrated(h, age)
    assert out[0] == pytest.approx((18 + 20 * 0.001) / (180 + 20))  # 0.0901
    assert out[1] == pytest.approx(out[0])
    assert out[2] == pytest.approx(0.001)  # an empty cell keeps the raw hazard
    assert out[3] == 0.001  # never active: not calibrated
    # a hazard three times larger falls in the next bin (log10 0.003 + 6 = 3.48 -> 6.95 -> 6)
    assert st.calibrated(np.array([0.003]), np.array([5]))[0] == pytest.approx(
        (18 + 20 * 0.003) / 200)
    assert st.calibrated(np.array([0.0032]), np.array([5]))[0] == pytest.approx(0.0032)  # bin 7


def test_each_row_scores_the_hazard_forecast_for_it():
    st = stats()
    st.absorb(np.array([[1.0]]))  # first activity: nothing was forecast for a seen entity
    assert st.cal_n.sum() == 0
    # now age 0 and no idle run yet: every level of the chain is the shrunk rate
    # pool = (1 + 0.5) / (1 * 1 + 1) = 0.75, rate = (1 + 0.75) / (1 + 1) = 0.875
    assert st.raw_hazard(st.age)[0] == pytest.approx(0.875)
    st.absorb(np.array([[0.0], [0.0], [2.0]]))  # idle at ages 0 and 1, active at age 2
    # log bin of 0.875: floor((log10 0.875 + 6) * 2) = 11 (the top one)
    assert st.cal_n[0, 11] == 1 and st.cal_ev[0].sum() == 0  # age 0 -> octave 0, no event
    assert st.cal_n[1].sum() == 2 and st.cal_ev[1].sum() == 1  # ages 1, 2 -> octave 1
    assert st.cal_n.sum() == 3 and st.t == 4


def test_calibration_learns_a_hazard_the_raw_model_underrates():
    """Functions invoked at random ages 3..40 after each call: a function's own few runs leave
    most ages with no ended run, so the raw hazard there is small; pooled over functions the
    realised frequency of such cells is higher, and the calibrated hazard moves towards it."""
    rng = np.random.default_rng(0)
    t_len, f = 600, 60
    rows = np.zeros((t_len, f))
    nxt = rng.integers(0, 10, f)
    for t in range(t_len):
        hit = nxt == t
        rows[t, hit] = 1.0
        nxt[hit] = t + 4 + rng.integers(0, 38, hit.sum())
    raw, cal = stats(f, hazard_calibration=False), stats(f)
    pr, pc, ys = [], [], []
    for t in range(t_len):
        if t > 200:
            seen = raw.age >= 0
            pr.append(raw.hazard()[seen])
            pc.append(cal.hazard()[seen])
            ys.append(rows[t, seen] > 0)
        raw.absorb(rows[t:t + 1])
        cal.absorb(rows[t:t + 1])
    pr, pc, ys = np.concatenate(pr), np.concatenate(pc), np.concatenate(ys)
    low = pr < 0.01  # cells the raw model calls near-impossible
    assert ys[low].mean() > 3 * pr[low].mean()  # ... are not
    assert abs(pc[low].mean() - ys[low].mean()) < abs(pr[low].mean() - ys[low].mean())

    def brier(p):
        return float(np.mean((p - ys) ** 2))

    assert brier(pc) < brier(pr)


def test_off_gives_the_raw_hazard_and_state_round_trips():
    hist = np.zeros((120, 2))
    hist[::7, 0] = 1.0
    hist[::3, 1] = 2.0
    off = online_predictor("intermittent-count", hazard_calibration=False, num_samples=50)
    on = online_predictor("intermittent-count", num_samples=50)
    off.forecast(hist[:100], 6000.0, 60.0, 1)
    on.forecast(hist[:100], 6000.0, 60.0, 1)
    np.testing.assert_allclose(off.hazard(), on.stats.raw_hazard(on.stats.age))
    assert off.stats.cal_n.sum() == 0 and on.stats.cal_n.sum() > 0
    state = json.loads(json.dumps(_jsonable(on.state_dict())))
    back = online_predictor("intermittent-count", num_samples=50)
    back.load_state_dict(state)
    np.testing.assert_array_equal(back.stats.cal_ev, on.stats.cal_ev)
    np.testing.assert_allclose(back.hazard(), on.hazard())
    # a state saved before calibration existed loads, with an empty table
    for k in ("cal_ev", "cal_n"):
        del state[k]
    old = online_predictor("intermittent-count", num_samples=50)
    old.load_state_dict(state)
    assert old.stats.cal_n.sum() == 0


@pytest.mark.parametrize("bad", [{"calib_k": 0.0}, {"calib_floor": 1.0},
                                 {"calib_bins_per_decade": -1.0}])
def test_bad_calibration_settings_are_refused(bad):
    with pytest.raises(ConfigError, match="calib"):
        IntermittentCountEstimator(context_length=8, prediction_length=1, **bad)
