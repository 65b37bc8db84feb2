"""Gaps are normal: missed scrapes are imputed and masked, never a reason to fall back.

A series that misses a 45-second stretch every 5 minutes (a scrape target that drops out
regularly) still gets a model forecast on every refresh; the fallback is for a context
with less than half of it observed, and it says why.
"""

from __future__ import annotations

import time

import numpy as np

from service import forecasting
from tests.daemon.conftest import send

STEP = 15


def _missed_scrapes(end: int, seconds: int, gap_every: int = 300, gap_s: int = 45,
                    seed: int = 0) -> list[tuple[int, float]]:
    """1-second samples of a noisy level ending at ``end``, with ``gap_s`` s missing every
    ``gap_every`` s."""
    rng = np.random.default_rng(seed)
    pts = []
    for i in range(seconds):
        t = end - seconds + i
        if t % gap_every < gap_s:
            continue
        pts.append((t, float(10 + 2 * np.sin(t / 600) + rng.normal(0, 0.5))))
    return pts


def test_missed_scrapes_get_a_model_forecast_every_refresh(http, store):
    now = int(time.time())
    now -= now % 300
    n_ctx = store.settings.forecast_context_steps
    send(http, "web-vm", "vm", "cpu_cores", _missed_scrapes(now, n_ctx * STEP))
    with store.sessions() as session:
        _, values = forecasting.bucketed(session, "web-vm", "cpu_cores", now, STEP, n_ctx)
    missing = float(np.isnan(values).mean())
    assert 0.1 < missing < 0.5  # three empty buckets in every twenty
    for k in range(4):  # refreshes at different phases of the gap pattern
        at = now + 60 * k
        res = forecasting.refresh(store, at)
        assert (res.series, res.forecasts, res.fallbacks) == (1, 1, 0), res
        body = http.get("/v1/forecasts/web-vm", params={"metric": "cpu_cores"}).json()
        assert body["fallback"] is False and body["model"] == store.settings.forecast_model
        # the imputed buckets do not drag the level towards zero
        assert 7 < body["steps"][0]["mean"] < 13


def test_mostly_empty_context_falls_back_and_says_why(http, store):
    now = int(time.time())
    now -= now % 300
    n_ctx = store.settings.forecast_context_steps
    # 35 % of the context observed: less than half, so the per-series fallback answers
    pts = _missed_scrapes(now, n_ctx * STEP, gap_every=300, gap_s=195)
    send(http, "web-vm", "vm", "cpu_cores", pts)
    res = forecasting.refresh(store, now)
    assert (res.forecasts, res.fallbacks) == (1, 1)
    body = http.get("/v1/forecasts/web-vm", params={"metric": "cpu_cores"}).json()
    assert body["fallback"] is True and body["model"] == "fallback:last"
    assert "missing" in body["reason"]
