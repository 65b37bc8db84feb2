"""Entities forecast jointly: one model call over an entity's metrics, as HARMONY does.

The refresh forecasts an entity's metrics (or the ``indicators`` a scaling target names) as
the indicators of one Forecast; every stored series says which indicators it was forecast
with, the joint draws are rebuilt from the stored records, and a target with
``forecaster: stored`` decides on those joint samples, demand first.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from service import decisions, forecasting
from tests.daemon.conftest import scaling_target, send

STEP = 15


def _series(now: int, seconds: int, level: float, seed: int) -> list[tuple[int, float]]:
    rng = np.random.default_rng(seed)
    return [(now - seconds + i, float(level + rng.normal(0, 0.2 * level)))
            for i in range(seconds)]


def _feed(http, now: int, metrics=("cpu_cores", "mem_gb", "requests")) -> None:  # noqa: ANN001
    for k, m in enumerate(metrics):
        send(http, "web-vm", "vm", m, _series(now, 1200, 5.0 * (k + 1), k))


def _now() -> int:
    now = int(time.time())
    return now - now % STEP


def test_an_entitys_metrics_are_forecast_jointly_and_served_with_their_indicators(http, store):
    now = _now()
    _feed(http, now)
    res = forecasting.refresh(store, now)
    assert (res.series, res.forecasts, res.fallbacks) == (3, 3, 0)
    for m in ("cpu_cores", "mem_gb", "requests"):
        body = http.get("/v1/forecasts/web-vm", params={"metric": m}).json()
        assert body["indicators"] == ["cpu_cores", "mem_gb", "requests"]
        assert body["model"] == "window-mean" and body["fallback"] is False
    with store.sessions() as session:
        joint = forecasting.joint_forecast(session, "web-vm", "mem_gb")
    assert joint.indicators == ("cpu_cores", "mem_gb", "requests")
    assert joint.samples.shape == (forecasting.STORED_SAMPLES,
                                   store.settings.forecast_horizon_steps, 3)
    # each indicator keeps its own level (columns are not mixed up)
    assert np.allclose(joint.mean[0], [5.0, 10.0, 15.0], rtol=0.15)


def test_without_joint_forecasting_each_metric_is_alone(http, settings_factory):
    from service.store.db import Store

    settings = settings_factory(forecast_joint=False)
    store = Store(settings)
    try:
        now = _now()
        _feed(http, now, ("cpu_cores", "mem_gb"))
        forecasting.refresh(store, now)
        body = http.get("/v1/forecasts/web-vm", params={"metric": "cpu_cores"}).json()
        assert body["indicators"] == ["cpu_cores"]
    finally:
        store.close()


def test_declared_indicators_and_sparse_metrics_shape_the_groups(http, store):
    now = _now()
    _feed(http, now, ("cpu_cores", "mem_gb", "requests"))
    # one sample a minute: 25 % of the buckets observed, so it is forecast alone (and falls
    # back) rather than sending the group to the fallback
    send(http, "web-vm", "vm", "disk_io", [(now - 1200 + 60 * i, 1.0) for i in range(20)])
    body = scaling_target(policy="bayes", params={}, indicators=["requests", "cpu_cores"])
    assert http.post("/v1/targets", json=body).status_code == 201
    res = forecasting.refresh(store, now)
    assert (res.series, res.forecasts) == (4, 4)

    def ind(m: str) -> list[str]:
        return http.get("/v1/forecasts/web-vm", params={"metric": m}).json()["indicators"]

    assert ind("cpu_cores") == ind("requests") == ["cpu_cores", "requests"]
    assert ind("mem_gb") == ["mem_gb"]
    sparse = http.get("/v1/forecasts/web-vm", params={"metric": "disk_io"}).json()
    assert sparse["indicators"] == ["disk_io"] and sparse["fallback"] is True
    assert "missing" in sparse["reason"]


@pytest.mark.parametrize("indicators,why", [
    (["mem_gb", "requests"], "must include the demand metric"),
    (["cpu_cores", "cpu_cores"], "listed twice"),
    (["cpu_cores"], "at least 2"),
])
def test_declared_indicators_are_validated(http, indicators, why):
    r = http.post("/v1/targets", json=scaling_target(indicators=indicators))
    assert r.status_code == 422 and why in r.text and "indicators" in r.text


def test_a_stored_forecaster_target_decides_on_the_joint_samples(http, store):
    now = _now()
    _feed(http, now)
    assert http.post("/v1/targets", json=scaling_target(
        policy="bayes", params={}, forecaster="stored")).status_code == 201
    assert http.post("/v1/targets", json=scaling_target(
        "web-online", policy="bayes", params={})).status_code == 201
    forecasting.refresh(store, now)
    decisions.decide_all(store, now)
    rec = http.get("/v1/recommendations/web").json()
    assert rec["valid"] and not rec["fallback"]
    assert rec["details"]["forecast_indicators"] == ["cpu_cores", "mem_gb", "requests"]
    assert rec["details"]["forecast_model"] == "window-mean"
    online = http.get("/v1/recommendations/web-online").json()
    assert "forecast_indicators" not in online["details"]
    assert online["details"]["forecast_model"] != "window-mean"
    # demand ~5 cores at 2 per replica: about three replicas, whichever forecaster
    assert 3 <= rec["desired"]["replicas"] <= 6

    # a stored forecast three periods old is no forecast: the decision says it fell back
    late = now + 4 * int(store.settings.forecast_interval_s)
    decisions.decide_all(store, late)
    rec = http.get("/v1/recommendations/web").json()
    assert rec["fallback"] is True


def test_the_stored_forecaster_realigns_to_the_decision_grid(http, store):
    now = _now()
    _feed(http, now, ("cpu_cores", "mem_gb"))
    forecasting.refresh(store, now)
    fc = forecasting.StoredForecast(store, "web-vm", "mem_gb", max_age_s=60)
    h = store.settings.forecast_horizon_steps
    at0 = fc(np.zeros((1, 1)), now + 3, float(STEP), h)
    assert at0.indicators == ("mem_gb", "cpu_cores") and at0.start == now  # demand first
    later = fc(np.zeros((1, 1)), now + 2 * STEP + 3, float(STEP), h)
    assert later.start == now + 2 * STEP and later.horizon == h
    # two steps have passed: they are dropped, and the last stored step is repeated twice
    assert np.array_equal(later.samples[:, : h - 2], at0.samples[:, 2:])
    assert np.array_equal(later.samples[:, h - 2], at0.samples[:, h - 1])
    assert np.array_equal(later.samples[:, h - 1], at0.samples[:, h - 1])
    from common.errors import NoDataError

    with pytest.raises(NoDataError, match="old"):
        fc(np.zeros((1, 1)), now + 61, float(STEP), 4)
    with pytest.raises(NoDataError, match="step"):
        fc(np.zeros((1, 1)), now, 30.0, 4)


def test_retrain_fits_one_global_model_per_indicator_set_over_the_training_history(
        http, settings_factory, monkeypatch):
    from models import base
    from service.store import model_registry as model_store
    from service.store.db import Store

    store = Store(settings_factory(train_history_s=7200,
                                   forecast_hierarchy={"vm": {"cpu_cores": 1, "mem_gb": 2}}))
    try:
        now = _now()
        for e in ("a-vm", "b-vm"):  # two entities with the same metrics: one model
            for k, m in enumerate(("cpu_cores", "mem_gb")):
                rng = np.random.default_rng(k)
                send(http, e, "vm", m, [(now - 7200 + i, float(5 * (k + 1) + rng.normal()))
                                        for i in range(7200)])
        seen = {}
        real = base.get_estimator

        def spy(name, **kw):  # noqa: ANN001, ANN202
            seen.setdefault(name, []).append(kw)
            return real(name, **kw)

        monkeypatch.setattr(base, "get_estimator", spy)
        reports = forecasting.retrain(store, now, model="window-mean")
        assert [(r["metrics"], r["series"], r["outcome"]) for r in reports] == [
            (["cpu_cores", "mem_gb"], 2, "registered")]
        with store.sessions() as session:
            rec = model_store.current_model(session, "daemon:cpu_cores+mem_gb")
        # two hours of 15-s buckets were read, not the one-hour forecast context
        assert "up to 7200 s" in rec.trained_on
        assert rec.metrics["indicators"] == ["cpu_cores", "mem_gb"]
        # window-mean reads no hierarchy: none passed; the refresh now uses the joint model
        assert all("levels" not in kw for kw in seen["window-mean"])
        forecasting.refresh(store, now)
        body = http.get("/v1/forecasts/b-vm", params={"metric": "mem_gb"}).json()
        assert body["model"].startswith("daemon:cpu_cores+mem_gb@")
        assert body["indicators"] == ["cpu_cores", "mem_gb"] and not body["fallback"]
        # a model that reads a hierarchy gets the configured levels for the entities' kind
        seen.clear()
        monkeypatch.setattr(base, "get_estimator_class", lambda name: type(
            "Fake", (), {"defaults": {"levels": None}}))
        forecasting.retrain(store, now + 15, model="window-mean")
        assert seen["window-mean"][0]["levels"] == {"cpu_cores": 1, "mem_gb": 2}
    finally:
        store.close()


def test_a_member_that_cannot_be_forecast_does_not_cost_the_others_their_model(
        http, settings_factory):
    from service.store.db import Store

    # 80 buckets read, a model context of 60: mem_gb stopped 35 buckets ago is observed over
    # 56 % of what is read (so it starts in the joint group) but misses 58 % of the model's
    # context, so the joint forecast falls back and is redone member by member
    store = Store(settings_factory(forecast_context_steps=80, forecast_horizon_steps=20))
    try:
        now = _now()
        send(http, "web-vm", "vm", "cpu_cores", _series(now, 80 * STEP, 5.0, 0))
        send(http, "web-vm", "vm", "mem_gb", _series(now - 35 * STEP, 45 * STEP, 9.0, 1))
        res = forecasting.refresh(store, now)
        assert (res.series, res.forecasts, res.fallbacks) == (2, 2, 1)
        cpu = http.get("/v1/forecasts/web-vm", params={"metric": "cpu_cores"}).json()
        mem = http.get("/v1/forecasts/web-vm", params={"metric": "mem_gb"}).json()
        assert cpu["model"] == "window-mean" and cpu["indicators"] == ["cpu_cores"]
        assert mem["fallback"] is True and "missing" in mem["reason"]
    finally:
        store.close()


def test_a_member_with_a_broken_registered_model_falls_back_alone(http, store, tmp_path):
    """A metric whose current model's artifact is gone keeps its own model (and falls back);
    the refresh goes on and the entity's other metric is forecast by the cheap model."""
    from service.store import model_registry as model_store

    now = _now()
    _feed(http, now, ("cpu_cores", "mem_gb"))
    with store.write_sessions() as session, session.begin():
        model_store.register_model(session, forecasting.daemon_model_name("mem_gb"), "v1",
                                   str(tmp_path / "missing"))
    res = forecasting.refresh(store, now)
    assert (res.series, res.forecasts, res.fallbacks) == (2, 2, 1)
    cpu = http.get("/v1/forecasts/web-vm", params={"metric": "cpu_cores"}).json()
    mem = http.get("/v1/forecasts/web-vm", params={"metric": "mem_gb"}).json()
    assert cpu["model"] == "window-mean" and cpu["indicators"] == ["cpu_cores"]
    assert mem["fallback"] is True and mem["indicators"] == ["mem_gb"]
