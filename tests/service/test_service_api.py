"""The HTTP API over a real socket (uvicorn in a thread), on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest


def now() -> int:
    return int(time.time())


def sample(ts, value, entity="vm-1", metric="cpu_util", kind="vm", **kw):
    out = {"entity": entity, "kind": kind, "metric": metric, "ts": ts, "value": value}
    out.update(kw)
    return out


def post_json(http, *samples):
    return http.post(
        "/v1/metrics",
        content=orjson.dumps({"samples": list(samples)}),
        headers={"content-type": "application/json"},
    )


def test_ingest_json_and_ndjson_then_query(http):
    t = now() - 100
    r = post_json(http, sample(t, 1.0), sample(t + 1, 2.5, labels={"zone": "a"}))
    assert r.status_code == 200 and r.json() == {"stored": 2}
    body = b"\n".join(
        orjson.dumps(x)
        for x in [
            sample(t + 2, 4.0),
            sample(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t + 3)), 8.0),
            sample(t, 3.0, entity="fn-a", kind="function", metric="requests"),
        ]
    )
    r = http.post("/v1/metrics", content=body, headers={"content-type": "application/x-ndjson"})
    assert r.status_code == 200 and r.json() == {"stored": 3}

    ents = http.get("/v1/entities").json()["entities"]
    assert [(e["name"], e["kind"]) for e in ents] == [("fn-a", "function"), ("vm-1", "vm")]
    assert ents[1]["labels"] == {"zone": "a"}
    assert (
        http.get("/v1/entities", params={"kind": "function"}).json()["entities"][0]["name"]
        == "fn-a"
    )

    res = http.get("/v1/series/vm-1/cpu_util", params={"start": t, "end": t + 10}).json()
    assert res["points"] == [[t, 1.0], [t + 1, 2.5], [t + 2, 4.0], [t + 3, 8.0]]
    assert res["source"] == "raw" and res["unit"] == "percent"
    # RFC 3339 bounds and a 2-second mean
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    agg = http.get("/v1/series/vm-1/cpu_util", params={"start": iso, "end": t + 3, "step": 2})
    b0 = t - t % 2
    expected = {b0: [], b0 + 2: [], b0 + 4: []}
    for ts, v in [(t, 1.0), (t + 1, 2.5), (t + 2, 4.0), (t + 3, 8.0)]:
        expected[ts - ts % 2].append(v)
    assert agg.json()["points"] == [[b, sum(v) / len(v)] for b, v in expected.items() if v]
    # default window: the last hour up to now
    assert len(http.get("/v1/series/vm-1/cpu_util").json()["points"]) == 4


@pytest.mark.parametrize("backend", ["sqlite"])  # validation happens before the store
@pytest.mark.parametrize(
    ("body", "ctype", "status", "where"),
    [
        (
            b'{"samples": [{"entity": "vm-1", "kind": "vm", "metric": "m", "ts": TS, '
            b'"value": NaN}]}',
            "application/json",
            422,
            "samples[0].value",
        ),
        (
            b'{"samples": [{"entity": "vm-1", "kind": "pod", "metric": "m", "ts": TS, '
            b'"value": 1}]}',
            "application/json",
            422,
            "samples[0].kind",
        ),
        (
            b'{"samples": [{"entity": "vm-1", "kind": "vm", "ts": TS, "value": 1}]}',
            "application/json",
            422,
            "samples[0].metric",
        ),
        (
            b'{"samples": [{"entity": "vm-1", "kind": "vm", "metric": "m", "ts": 9e8, '
            b'"value": 1}]}',
            "application/json",
            422,
            "samples[0].ts",
        ),
        (b'{"samples": [', "application/json", 400, "body"),
        (b'{"entity": "vm-1"}\n{oops}\n', "application/x-ndjson", 400, "line 2"),
        (b"entity=vm-1", "application/x-www-form-urlencoded", 415, "Content-Type"),
    ],
)
def test_bad_requests_get_4xx_naming_item_and_field(http, body, ctype, status, where):
    body = body.replace(b"TS", str(now() - 5).encode())
    r = http.post("/v1/metrics", content=body, headers={"content-type": ctype})
    assert r.status_code == status
    j = r.json()
    assert j["problems"][0]["where"] == where
    assert j["detail"].startswith(where)


def test_old_timestamp_is_refused(http):
    r = post_json(http, sample(9e8, 1.0))
    assert r.status_code == 422
    assert r.json()["problems"][0]["where"] == "samples[0].ts"


def test_future_timestamp_is_refused(http):
    r = post_json(http, sample(now() + 3600, 1.0))
    assert r.status_code == 422
    p = r.json()["problems"][0]
    assert (p["item"], p["field"]) == (0, "ts") and "in the future" in p["message"]


def test_rejected_batch_writes_nothing(http):
    t = now() - 10
    # the bad value comes last, after a new entity: nothing of the batch may remain
    body = (
        '{"samples": ['
        + orjson.dumps(sample(t, 1.0, entity="vm-3")).decode()
        + f', {{"entity": "vm-3", "kind": "vm", "metric": "cpu_util", "ts": {t}, '
        '"value": Infinity}]}'
    ).encode()
    r = http.post("/v1/metrics", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["problems"][0]["item"] == 1
    names = [e["name"] for e in http.get("/v1/entities").json()["entities"]]
    assert "vm-3" not in names


def test_kind_conflict_is_409(http):
    t = now() - 10
    assert post_json(http, sample(t, 1.0)).status_code == 200
    r = post_json(http, sample(t, 1.0, entity="other"), sample(t, 2.0, kind="server"))
    assert r.status_code == 409
    assert r.json()["problems"][0] | {"message": None} == {
        "where": "samples[1].kind",
        "item": 1,
        "field": "kind",
        "message": None,
    }
    assert http.get("/v1/series/other/cpu_util").status_code == 404


def test_query_errors(http):
    t = now() - 10
    post_json(http, sample(t, 1.0))
    r = http.get("/v1/series/ghost/cpu_util")
    assert r.status_code == 404 and "no entity named 'ghost'" in r.json()["detail"]
    r = http.get("/v1/series/vm-1/cpu_util", params={"start": t, "end": t - 5})
    assert r.status_code == 422 and r.json()["problems"][0]["where"] == "end"
    r = http.get("/v1/series/vm-1/cpu_util", params={"start": "soon"})
    assert r.status_code == 422 and r.json()["problems"][0]["where"] == "start"
    r = http.get("/v1/series/vm-1/cpu_util", params={"start": 0, "end": t})
    assert r.status_code == 422 and "shorten the range" in r.json()["detail"]
    r = http.get("/v1/series/vm-1/cpu_util", params={"step": 0})
    assert r.status_code == 422 and r.json()["problems"][0]["where"] == "step"
    r = http.get("/v1/series/vm-1/cpu_util", params={"agg": "p99"})
    assert r.status_code == 422 and r.json()["detail"].startswith("agg: ")


def test_health_readiness_and_docs(http):
    assert http.get("/healthz").json() == {"status": "ok"}
    ready = http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ok"
    assert http.get("/docs").status_code == 200
    spec = http.get("/openapi.json").json()
    assert {"/v1/metrics", "/v1/entities", "/v1/series/{entity}/{metric}"} <= set(spec["paths"])
    assert "application/x-ndjson" in spec["paths"]["/v1/metrics"]["post"]["requestBody"]["content"]


def test_readyz_is_503_before_migrations(settings, serve):
    with serve(settings) as url:
        r = httpx.get(url + "/readyz")
        assert r.status_code == 503 and "tidewise db upgrade" in r.json()["detail"]
        assert httpx.get(url + "/healthz").status_code == 200


def test_body_over_the_limit_is_413(settings_factory, serve):
    from service import migrate

    s = settings_factory(max_body_bytes=2048)
    migrate.upgrade(s)
    with serve(s) as url, httpx.Client(base_url=url) as http:
        t = now() - 10
        small = post_json(http, sample(t, 1.0))
        assert small.status_code == 200
        big = post_json(http, *[sample(t - i, 1.0) for i in range(100)])
        assert big.status_code == 413 and "TIDEWISE_MAX_BODY_BYTES" in big.json()["detail"]

        def chunks():  # no Content-Length: the limit holds while streaming
            for _ in range(10):
                yield b" " * 1000

        r = http.post("/v1/metrics", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert len(http.get("/v1/series/vm-1/cpu_util").json()["points"]) == 1


def test_scheduler_keeps_rollups_current_inside_the_served_app(settings_factory, serve):
    from service import migrate

    s = settings_factory(scheduler_enabled=True, rollup_interval_s=1)
    migrate.upgrade(s)
    t = now() - 600
    t -= t % 60
    with serve(s) as url, httpx.Client(base_url=url) as http:
        assert post_json(http, *[sample(t + i, float(i)) for i in range(120)]).status_code == 200
        params = {"start": t, "end": t + 119, "step": 60}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            res = http.get("/v1/series/vm-1/cpu_util", params=params).json()
            if res["source"] == "rollup":
                break
            time.sleep(0.2)
        assert res["source"] == "rollup"
        assert res["points"] == [[t, 29.5], [t + 60, 89.5]]


def test_gzip_bodies_are_accepted_and_bounded(settings_factory, serve):
    import gzip

    from service import migrate

    s = settings_factory(max_body_bytes=4096)
    migrate.upgrade(s)
    t = now() - 100
    with serve(s) as url, httpx.Client(base_url=url) as http:
        headers = {"content-type": "application/json", "content-encoding": "gzip"}
        body = orjson.dumps({"samples": [sample(t + i, float(i)) for i in range(5)]})
        r = http.post("/v1/metrics", content=gzip.compress(body), headers=headers)
        assert r.status_code == 200 and r.json() == {"stored": 5}
        # small on the wire, too large once inflated: refused, nothing written
        bomb = orjson.dumps({"samples": [sample(t - i, 1.0) for i in range(200)]})
        assert len(gzip.compress(bomb)) < 4096 < len(bomb)
        r = http.post("/v1/metrics", content=gzip.compress(bomb), headers=headers)
        assert r.status_code == 413
        r = http.post("/v1/metrics", content=b"not gzip", headers=headers)
        assert r.status_code == 400 and "gzip" in r.json()["detail"]
        r = http.post("/v1/metrics", content=body, headers=headers | {"content-encoding": "br"})
        assert r.status_code == 415 and r.json()["problems"][0]["where"] == "Content-Encoding"
        pts = http.get("/v1/series/vm-1/cpu_util", params={"start": t - 300, "end": t + 10})
        assert len(pts.json()["points"]) == 5


def test_series_by_query_parameters_reaches_names_with_a_slash(http):
    t = now() - 10
    assert post_json(http, sample(t, 4.0, entity="host-1/ctr-7")).status_code == 200
    r = http.get("/v1/series", params={"entity": "host-1/ctr-7", "metric": "cpu_util"})
    assert r.status_code == 200 and r.json()["points"] == [[t, 4.0]]
    assert http.get("/v1/series", params={"entity": "host-1/ctr-7"}).status_code == 422


@pytest.mark.parametrize("backend", ["sqlite"])
def test_store_busy_is_503_and_writes_nothing(settings_factory, serve):
    import sqlite3

    from service import migrate

    s = settings_factory(sqlite_busy_timeout_ms=100)
    migrate.upgrade(s)
    path = s.db_url.removeprefix("sqlite:///")
    with serve(s) as url, httpx.Client(base_url=url) as http:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock past the timeout
        try:
            r = post_json(http, sample(now() - 5, 1.0))
            assert r.status_code == 503 and "retry" in r.json()["detail"]
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert http.get("/v1/entities").json()["entities"] == []
        assert post_json(http, sample(now() - 5, 1.0)).status_code == 200


def test_settings_dependency_can_be_overridden(store, serve):
    """Request limits come from the settings dependency, which tests may override."""
    from service.api import create_app
    from service.deps import get_app_settings

    app = create_app(store=store)
    strict = store.settings.model_copy(update={"max_future_s": 0})
    app.dependency_overrides[get_app_settings] = lambda: strict
    with serve(app) as url, httpx.Client(base_url=url) as http:
        r = post_json(http, sample(now() + 60, 1.0))
        assert r.status_code == 422 and "at most 0 s allowed" in r.json()["detail"]
        app.dependency_overrides.clear()
        assert post_json(http, sample(now() + 60, 1.0)).status_code == 200
