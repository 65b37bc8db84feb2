"""Forecasts and decisions on ``/metrics`` (service/promexport.py, service/promreads.py).

The exposition is parsed back with prometheus_client's own parser: quantiles equal the stored
forecast's columns (or the quantile of its sample paths), label values are escaped, the
series cap drops whole series and counts them, stale decisions lose their desired setting,
and a scrape reads the store a fixed number of times whatever the number of series.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event

from models.forecast import Forecast
from service import forecasting, migrate
from service.config import ConfigError, load_settings
from service.promexport import FALLBACK_REASONS, Telemetry, fallback_reason
from service.store import forecasts as forecast_store
from service.store.db import Store
from service.store.tables import DecisionRecord, Entity, Sample, Series, Target
from tests.daemon.conftest import bearer, serve_in_thread

NOW = 1_790_000_000
STORED_FAMILIES = ("tidewise_forecast", "tidewise_forecast_fallback", "tidewise_input_age_seconds",
                   "tidewise_desired", "tidewise_decision_age_seconds",
                   "tidewise_decision_fallback")


@pytest.fixture
def make_store(settings_factory):  # noqa: ANN001, ANN201
    """Open a migrated store with settings overrides (closed at the end of the test)."""
    opened = []

    def make(**kw) -> Store:
        s = settings_factory(**kw)
        migrate.upgrade(s)
        store = Store(s)
        opened.append(store)
        return store

    yield make
    for s in opened:
        s.close()


def _series(store: Store, entity: str, metric: str, last_ts: int | None = None) -> int:
    with store.write_sessions() as session, session.begin():
        e = session.query(Entity).filter_by(name=entity).one_or_none()
        if e is None:
            e = Entity(name=entity, kind="vm", labels={})
            session.add(e)
            session.flush()
        s = Series(entity_id=e.id, metric=metric, unit="")
        session.add(s)
        session.flush()
        if last_ts is not None:
            session.add_all([Sample(series_id=s.id, ts=last_ts - 5, value=1.0),
                             Sample(series_id=s.id, ts=last_ts, value=2.0)])
        return int(s.id)


def _forecast(store: Store, sid: int, samples: np.ndarray, step: float = 15.0,
              model: str = "window-mean", info: dict | None = None,
              computed_at: int = NOW) -> dict:
    fc = Forecast(samples[:, :, None], float(NOW), step, ("value",), model=model,
                  info=info or {})
    payload = forecasting.payload(fc)
    forecast_store.save_forecasts(store, [{
        "series_id": sid, "computed_at": computed_at, "start": fc.start, "step": fc.step,
        "model": model, "fallback": model.startswith("fallback"), "payload": payload,
        "samples": forecasting.stored_samples(fc),
    }])
    return payload


def _target(store: Store, name: str, kind: str, desired: dict | None, computed_at: int,
            fallback: bool = False) -> None:
    with store.write_sessions() as session, session.begin():
        t = Target(name=name, kind=kind, policy="hpa", spec={}, params={}, created_at=NOW,
                   updated_at=NOW)
        session.add(t)
        session.flush()
        if desired is not None:
            session.add(DecisionRecord(
                target_id=t.id, computed_at=computed_at, policy="hpa", valid=True,
                fallback=fallback, why="", action={}, details={}, memory=None, desired=desired))


def _samples(text: str) -> dict[str, list]:
    out: dict[str, list] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _one(samples: dict[str, list], name: str, **labels) -> float:
    hits = [v for lab, v in samples.get(name, [])
            if all(lab.get(k) == x for k, x in labels.items())]
    assert len(hits) == 1, (name, labels, samples.get(name))
    return hits[0]


def test_quantiles_are_the_stored_forecast_at_each_horizon(make_store):
    store = make_store(export_quantiles="0.1,0.5,0.9,0.99", export_horizons_s="15,60,300,301")
    sid = _series(store, "web-vm", "cpu_cores", last_ts=NOW - 3)
    rng = np.random.default_rng(7)
    samples = rng.gamma(2.0, 3.0, size=(100, 20))  # (S, H): 20 steps of 15 s = 300 s
    payload = _forecast(store, sid, samples)
    text = Telemetry().render(store, now=NOW + 2).decode()
    got = _samples(text)
    for horizon, k in ((15, 0), (60, 3), (300, 19)):
        lab = {"entity": "web-vm", "metric": "cpu_cores", "horizon_s": str(horizon)}
        # stored columns: exactly what GET /v1/forecasts serves
        assert _one(got, "tidewise_forecast", quantile="0.1", **lab) == payload["lo-80"][k]
        assert _one(got, "tidewise_forecast", quantile="0.5", **lab) == payload["median"][k]
        assert _one(got, "tidewise_forecast", quantile="0.9", **lab) == payload["hi-80"][k]
        # not a stored column: the quantile of the stored sample paths
        q99 = _one(got, "tidewise_forecast", quantile="0.99", **lab)
        stored = samples[:, k].astype(np.float32).astype(np.float64)  # the paths as kept
        assert q99 == pytest.approx(float(np.quantile(stored, 0.99)), rel=1e-12)
        assert q99 == pytest.approx(float(np.quantile(samples[:, k], 0.99)), abs=1e-5)
        assert payload["hi-80"][k] <= q99
    # 301 s is past the last step: left out, not extrapolated
    assert {lab["horizon_s"] for lab, _ in got["tidewise_forecast"]} == {"15", "60", "300"}
    assert len(got["tidewise_forecast"]) == 12
    assert _one(got, "tidewise_forecast_fallback", entity="web-vm", metric="cpu_cores") == 0.0
    assert got["tidewise_forecast_fallback"][0][0]["reason"] == ""  # no label to Prometheus
    assert _one(got, "tidewise_input_age_seconds", entity="web-vm", metric="cpu_cores") == 5.0
    assert _one(got, "tidewise_export_dropped_series") == 0.0
    # the daemon's own families are still there
    assert "tidewise_ingest_samples_total" in got


def test_a_forecast_no_refresh_replaced_loses_its_quantiles(make_store):
    store = make_store(export_quantiles="0.5", export_horizons_s="15", forecast_interval_s=15)
    _forecast(store, _series(store, "gone", "m", last_ts=NOW - 300), np.full((10, 2), 1.0),
              computed_at=NOW - 46)  # more than three 15-s periods ago
    _forecast(store, _series(store, "live", "m", last_ts=NOW), np.full((10, 2), 2.0),
              computed_at=NOW - 45)
    got = _samples(Telemetry().render(store, now=NOW).decode())
    assert [lab["entity"] for lab, _ in got["tidewise_forecast"]] == ["live"]
    # the input age still says why, and the flag is still there
    assert _one(got, "tidewise_input_age_seconds", entity="gone") == 300
    assert _one(got, "tidewise_forecast_fallback", entity="gone") == 0


def test_label_values_are_escaped(make_store):
    store = make_store(export_quantiles="0.5", export_horizons_s="15")
    entity = 'we"b\\vm\nx'  # a quote, a backslash and a newline
    metric = 'node_cpu_seconds_total{cpu="0",mode="idle"}'
    sid = _series(store, entity, metric, last_ts=NOW)
    _forecast(store, sid, np.full((10, 2), 3.0))
    _target(store, 'row"7', "power", {"caps": {'s\\1': 225.0, "s2": 250.0}}, NOW - 1)
    text = Telemetry().render(store, now=NOW).decode()
    assert 'entity="we\\"b\\\\vm\\nx"' in text
    assert 'metric="node_cpu_seconds_total{cpu=\\"0\\",mode=\\"idle\\"}"' in text
    got = _samples(text)  # parses back to the stored names
    assert _one(got, "tidewise_forecast", entity=entity, metric=metric, quantile="0.5") == 3.0
    assert _one(got, "tidewise_desired", target='row"7', kind="power", setting="cap_w",
                server="s\\1") == 225.0
    assert _one(got, "tidewise_desired", target='row"7', server="s2") == 250.0


def test_desired_ages_and_stale_decisions(make_store):
    store = make_store(forecast_interval_s=15)
    _target(store, "web", "vm", {"replicas": 4}, NOW - 10)
    _target(store, "fn", "serverless", {"warm": 3}, NOW - 2, fallback=True)
    _target(store, "old", "vm", {"replicas": 9}, NOW - 46)  # > 3 periods: stale
    _target(store, "new", "vm", None, 0)  # no decision yet
    got = _samples(Telemetry().render(store, now=NOW).decode())
    assert _one(got, "tidewise_desired", target="web", kind="scaling", setting="replicas") == 4
    assert _one(got, "tidewise_desired", target="fn", kind="serverless", setting="warm") == 3
    assert {lab["target"] for lab, _ in got["tidewise_desired"]} == {"web", "fn"}
    assert _one(got, "tidewise_decision_age_seconds", target="web") == 10
    assert _one(got, "tidewise_decision_age_seconds", target="old") == 46
    assert _one(got, "tidewise_decision_fallback", target="fn") == 1
    assert _one(got, "tidewise_decision_fallback", target="web") == 0
    assert "new" not in {lab["target"] for lab, _ in got["tidewise_decision_age_seconds"]}
    # refusing fallback decisions leaves the fallback's desired setting out too
    strict = make_store(forecast_interval_s=15, refuse_fallback_decisions=True)  # same db
    got = _samples(Telemetry().render(strict, now=NOW).decode())
    assert {lab["target"] for lab, _ in got["tidewise_desired"]} == {"web"}
    assert _one(got, "tidewise_decision_fallback", target="fn") == 1


def test_fallback_forecast_carries_a_bounded_reason(make_store):
    store = make_store(export_quantiles="0.5", export_horizons_s="15")
    sid = _series(store, "a", "m", last_ts=NOW)
    _forecast(store, sid, np.full((10, 2), 1.0), model="fallback:last",
              info={"reason": "NoDataError: only 1 buckets of history"})
    got = _samples(Telemetry().render(store, now=NOW).decode())
    assert _one(got, "tidewise_forecast_fallback", entity="a", metric="m",
                reason="short_history") == 1.0


@pytest.mark.parametrize(("text", "reason"), [
    ("NoDataError: only 1 buckets of history", "short_history"),
    ("history of 3 rows is shorter than the context 8", "short_history"),
    ("40% of the context of indicator 'value' is missing (more than 20%)", "gaps"),
    ("InputError: train series 'e' row 220, indicator 'value': NaN or Inf value (fill or "
     "drop missing values before training; 20 such values)", "gaps"),
    ("NoDataError: nothing", "no_data"),
    ("model failed: RuntimeError: boom", "model_error"),
    ("model produced NaN or Inf samples", "model_error"),
    ("OSError: [Errno 2] No such file: '/m/model.pt'", "model_error"),
    ("ValueError: model forecasts 4 steps, 10 needed", "model_error"),
    ("", "other"),
    ('free text with "quotes"', "other"),
])
def test_fallback_reasons_map_to_the_known_set(text, reason):
    assert fallback_reason(text) == reason
    assert reason in FALLBACK_REASONS


def test_series_cap_drops_whole_series_and_counts_them(make_store):
    # per forecast series: 2 quantiles x 1 horizon + fallback + input age = 4 series
    store = make_store(export_quantiles="0.1,0.9", export_horizons_s="15", export_max_series=9)
    _target(store, "web", "vm", {"replicas": 2}, NOW)  # desired, age, fallback: 3 series
    for e in ("a", "b", "c"):
        _forecast(store, _series(store, e, "m", last_ts=NOW), np.full((10, 2), 1.0))
    got = _samples(Telemetry().render(store, now=NOW).decode())
    exported = sum(len(got.get(k, [])) for k in STORED_FAMILIES)
    assert exported == 7 <= 9
    assert {lab["entity"] for lab, _ in got["tidewise_forecast"]} == {"a"}  # never half a series
    assert _one(got, "tidewise_desired", target="web") == 2
    assert _one(got, "tidewise_export_dropped_series") == 8  # b and c, 4 each
    # 0 turns the stored-state series off entirely (same database)
    off = make_store(export_max_series=0)
    got = _samples(Telemetry().render(off, now=NOW).decode())
    assert not set(STORED_FAMILIES) & set(got)
    assert "tidewise_export_dropped_series" not in got


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_scrape_reads_the_store_a_fixed_number_of_times(make_store):
    store = make_store(export_quantiles="0.5", export_horizons_s="15")
    for i in range(30):
        _forecast(store, _series(store, f"e{i:02d}", "m", last_ts=NOW), np.full((10, 2), i))
    _target(store, "web", "vm", {"replicas": 2}, NOW)
    statements: list[str] = []
    event.listen(store.engine, "before_cursor_execute",
                 lambda *a: statements.append(a[2]) if a[2].startswith("SELECT") else None)
    tel = Telemetry()
    first = _samples(tel.render(store, now=NOW).decode())
    n_first = len(statements)
    statements.clear()
    second = _samples(tel.render(store, now=NOW).decode())
    # targets + count, heads + count, payloads (one chunk); then payloads only when changed
    assert n_first == 5, statements
    assert len(statements) == 4, statements
    assert first == second
    assert len(first["tidewise_forecast"]) == 30
    # a refreshed forecast is re-read, the others come from the cache
    sid = _series(store, "z", "m", last_ts=NOW)
    _forecast(store, sid, np.full((10, 2), 99.0))
    statements.clear()
    third = _samples(tel.render(store, now=NOW).decode())
    assert len(statements) == 5
    assert _one(third, "tidewise_forecast", entity="z") == 99.0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_failing_store_read_still_serves_the_daemons_own_metrics(settings_factory):
    store = Store(settings_factory())  # not migrated: every query fails
    try:
        tel = Telemetry()
        tel.ingested(3)
        text = tel.render(store, now=NOW).decode()
        text = tel.render(store, now=NOW).decode()
    finally:
        store.close()
    got = _samples(text)
    assert _one(got, "tidewise_ingest_samples_total") == 3
    assert _one(got, "tidewise_export_errors_total") == 2
    assert "tidewise_forecast" not in got


@pytest.mark.parametrize(("env", "value", "phrase"), [
    ("export_quantiles", "0.5,1.5", "(0, 1)"),
    ("export_quantiles", "0,0.5", "(0, 1)"),
    ("export_quantiles", "half", "comma-separated numbers"),
    ("export_quantiles", ",".join(["0.5"] * 11), "at most 10"),
    ("export_horizons_s", "0,60", "positive whole seconds"),
    ("export_horizons_s", "7.5", "positive whole seconds"),
    ("export_max_series", "-1", "greater than or equal"),
])
def test_export_settings_refuse_nonsense(env, value, phrase):
    with pytest.raises(ConfigError) as err:
        load_settings(db_url="sqlite:///./x.db", **{env: value})
    assert f"TIDEWISE_{env.upper()}" in str(err.value)
    assert phrase in str(err.value)


def test_export_settings_parse_sorted_without_repeats():
    s = load_settings(db_url="sqlite:///./x.db", export_quantiles=" 0.9, 0.1,0.9",
                      export_horizons_s="300,60,60")
    assert s.export_quantile_levels == (0.1, 0.9)
    assert s.export_horizon_list == (60, 300)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_metrics_route_serves_the_forecast_the_api_serves(make_store):
    import httpx

    store = make_store(export_quantiles="0.05,0.95", export_horizons_s="30")
    sid = _series(store, "web-vm", "cpu_cores", last_ts=int(time.time()))
    rng = np.random.default_rng(1)
    _forecast(store, sid, rng.normal(5.0, 1.0, size=(100, 4)), computed_at=int(time.time()))
    with serve_in_thread(store.settings) as url, httpx.Client(base_url=url, timeout=30) as c:
        assert c.get("/metrics").status_code == 401
        r = c.get("/metrics", headers=bearer("read"))
        fc = c.get("/v1/forecasts/web-vm", params={"metric": "cpu_cores"},
                   headers=bearer("read")).json()
    assert r.status_code == 200
    got = _samples(r.text)
    step = fc["steps"][1]  # 30 s after the origin with 15-s steps: the second step
    lo = _one(got, "tidewise_forecast", quantile="0.05", horizon_s="30")
    hi = _one(got, "tidewise_forecast", quantile="0.95", horizon_s="30")
    assert math.isclose(lo, step["lo-90"]) and math.isclose(hi, step["hi-90"])
