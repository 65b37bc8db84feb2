"""A target's Prometheus-compatible ``source``: declaring it, and every way a read fails.

The servers themselves are in ``test_prom_source_e2e.py``; here a small fake of the
query_range API (``httpx.MockTransport``) answers what real servers answer when things go
wrong, and the HTTP API checks what is accepted and shown back.
"""

from __future__ import annotations

import json
import time

import httpx
import numpy as np
import pytest

from service.promsource import MAX_POINTS, PromSource, SourceError, read_buckets
from tests.daemon.conftest import scaling_target

URL = "http://prom.example:9090"
QUERY = 'sum(rate(http_requests_total{job="web"}[1m]))'


def answer(result: list | None = None, status: int = 200, body: object = None):  # noqa: ANN201
    """A transport answering every request with one query_range body; it records them."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if body is not None:
            return httpx.Response(status, content=body if isinstance(body, bytes)
                                  else json.dumps(body).encode())
        return httpx.Response(status, json={"status": "success", "data": {
            "resultType": "matrix", "result": result or []}})

    return httpx.MockTransport(handle), seen


def test_buckets_are_evaluated_at_their_last_millisecond_and_gaps_stay_nan() -> None:
    now, step = 1_800_000_007, 15
    end = now - now % step
    # values at the last ms of buckets 0, 1 and 3 of 4 (bucket 2: no value), one NaN value
    pts = [[end - 4 * step + step * i + step - 0.001, str(v)]
           for i, v in ((0, 1.5), (1, "NaN"), (3, 4.0))]
    transport, seen = answer([{"metric": {}, "values": pts}])
    ts, v = read_buckets(PromSource(serverAddress=URL, query=QUERY), now, step, 4,
                         transport=transport)
    assert list(ts) == [end - 60, end - 45, end - 30, end - 15]
    assert v[0] == 1.5 and np.isnan(v[1]) and np.isnan(v[2]) and v[3] == 4.0
    (req,) = seen
    assert req.url.path == "/api/v1/query_range"
    assert req.url.params["query"] == QUERY and req.url.params["step"] == "15"
    assert float(req.url.params["start"]) == end - 60 + 14.999
    assert float(req.url.params["end"]) == end + 14.999 - 15


def test_aggregate_wraps_a_selector_over_exactly_one_step() -> None:
    src = PromSource(serverAddress=URL + "/", query='cpu{pod="a"}', aggregate="avg")
    assert src.promql(15) == 'avg_over_time(cpu{pod="a"}[15s])'
    assert src.url == URL + "/api/v1/query_range"


def test_long_ranges_are_split_into_consecutive_chunks() -> None:
    transport, seen = answer([])
    n = 2 * MAX_POINTS + 5
    read_buckets(PromSource(serverAddress=URL, query=QUERY), 2_000_000_000, 1, n,
                 transport=transport)
    spans = [(float(r.url.params["start"]), float(r.url.params["end"])) for r in seen]
    assert [round(b - a) + 1 for a, b in spans] == [MAX_POINTS, MAX_POINTS, 5]
    assert all(round(b2 - a1) == 1 for (_, a1), (b2, _) in zip(spans, spans[1:], strict=False))


@pytest.mark.parametrize(
    ("transport", "phrases"),
    [
        (answer(status=401, body={"status": "error", "error": "unauthorized"})[0],
         ["HTTP 401", "'unauthorized'", "check authModes"]),
        (answer(status=400, body={"status": "error", "errorType": "bad_data",
                                  "error": "1:5: parse error: unexpected <EOF>"})[0],
         ["HTTP 400", "parse error"]),
        (answer(status=502, body=b"<html>Bad Gateway</html>")[0], ["HTTP 502", "Bad Gateway"]),
        (answer(status=200, body=b"not json")[0], ["HTTP 200"]),
        (answer([{"metric": {"pod": "a"}, "values": []},
                 {"metric": {"pod": "b"}, "values": []}])[0], ["gives 2 series", "sum("]),
        (answer(body={"status": "success", "data": {"resultType": "scalar",
                                                    "result": [1, "2"]}})[0],
         ["expected a matrix", "'scalar'"]),
        (answer([{"metric": {}, "values": [[1, "x"]]}])[0], ["not a [time, value] pair"]),
        (httpx.MockTransport(lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused"))),
         ["ConnectError", "refused"]),
        (httpx.MockTransport(lambda r: (_ for _ in ()).throw(httpx.ReadTimeout("slow"))),
         ["no answer within 2 s", "timeoutSeconds"]),
    ],
)
def test_a_failed_read_names_url_query_and_what_went_wrong(transport, phrases) -> None:  # noqa: ANN001
    src = PromSource(serverAddress=URL, query=QUERY, timeoutSeconds=2)
    with pytest.raises(SourceError) as err:
        read_buckets(src, 1_800_000_000, 15, 10, transport=transport)
    msg = str(err.value)
    assert msg.startswith(f"{URL}/api/v1/query_range (query {QUERY!r}): "), msg
    for phrase in phrases:
        assert phrase in msg, (phrase, msg)


def test_secrets_come_from_prefixed_env_or_the_secrets_dir_and_are_never_quoted(
        tmp_path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("TIDEWISE_SOURCE_T", "s3cret-token")
    refusal = {"status": "error", "error": 'unknown token "Bearer s3cret-token"'}
    transport, seen = answer(status=403, body=refusal)
    src = PromSource(serverAddress=URL, query=QUERY, authModes="bearer",
                     bearerTokenEnv="TIDEWISE_SOURCE_T", customHeaders={"X-Scope-OrgID": "a"})
    with pytest.raises(SourceError) as err:
        read_buckets(src, 1_800_000_000, 15, 10, transport=transport)
    assert "s3cret-token" not in str(err.value) and "***" in str(err.value)
    assert seen[0].headers["Authorization"] == "Bearer s3cret-token"
    assert seen[0].headers["X-Scope-OrgID"] == "a"

    (tmp_path / "pw").write_text("hunter2\n")
    transport, seen = answer([])
    basic = PromSource(serverAddress=URL, query=QUERY, authModes="basic", username="tw",
                       passwordFile="pw")
    read_buckets(basic, 1_800_000_000, 15, 10, str(tmp_path), transport=transport)
    assert seen[0].headers["Authorization"] == httpx.BasicAuth("tw", "hunter2")._auth_header
    # outside the secrets folder, no folder set, an unset variable: refused, saying what to do
    (tmp_path / "sub").mkdir()
    escape = PromSource(serverAddress=URL, query=QUERY, authModes="basic", username="tw",
                        passwordFile="../pw")
    for src, where, phrase in ((escape, str(tmp_path / "sub"), "outside"),
                               (basic, None, "set TIDEWISE_SOURCE_SECRETS_DIR"),
                               (PromSource(serverAddress=URL, query=QUERY, authModes="bearer",
                                           bearerTokenEnv="TIDEWISE_SOURCE_UNSET"), None,
                                "TIDEWISE_SOURCE_UNSET is not set")):
        with pytest.raises(SourceError) as err:
            read_buckets(src, 1_800_000_000, 15, 10, where, transport=transport)
        assert phrase in str(err.value), err.value


SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
SOURCE = {"serverAddress": URL, "query": QUERY, "authModes": "bearer",
          "bearerTokenEnv": "TIDEWISE_SOURCE_PROM"}


@SQLITE
@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        ({**SOURCE, "bearerToken": "inline-s3cret"}, "secrets are not accepted inline"),
        ({"serverAddress": URL, "query": QUERY, "authModes": "basic", "username": "u",
          "password": "inline-s3cret"}, "password: secrets are not accepted inline"),
        ({**SOURCE, "bearerTokenEnv": "TIDEWISE_TOKENS"}, "pattern"),
        ({**SOURCE, "bearerTokenFile": "t"}, "exactly one of bearerTokenEnv, bearerTokenFile"),
        ({"serverAddress": URL, "query": QUERY, "authModes": "basic", "username": "u"},
         "username and exactly one of passwordEnv, passwordFile"),
        ({"serverAddress": URL, "query": QUERY, "passwordEnv": "TIDEWISE_SOURCE_X"},
         "credentials given without authModes"),
        ({**SOURCE, "customHeaders": {"Authorization": "Bearer x"}}, "not allowed"),
        ({**SOURCE, "serverAddress": "prom:9090"}, "pattern"),
        ({**SOURCE, "authModes": "tls"}, "bearer"),
        ({**SOURCE, "aggregate": "median"}, "avg"),
    ],
)
def test_bad_sources_get_422_naming_the_field(http, source, phrase) -> None:  # noqa: ANN001
    r = http.post("/v1/targets", json=scaling_target(source=source))
    assert r.status_code == 422, r.text
    err = r.json()
    text = json.dumps(err)
    assert phrase in text, err
    assert any("source" in (p["field"] or "") or "source" in p["message"]
               for p in err["problems"]), err
    assert "inline-s3cret" not in text  # a refused secret is not echoed either
    assert http.get("/v1/targets").json() == {"targets": []}


@SQLITE
def test_a_declared_source_is_shown_back_without_secrets(http, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.setenv("TIDEWISE_SOURCE_PROM", "the-real-token")
    r = http.post("/v1/targets", json=scaling_target(source=SOURCE))
    assert r.status_code == 201, r.text
    shown = http.get("/v1/targets/web").json()
    assert shown["source"]["serverAddress"] == URL and shown["source"]["query"] == QUERY
    assert shown["source"]["bearerTokenEnv"] == "TIDEWISE_SOURCE_PROM"
    assert "the-real-token" not in json.dumps(http.get("/v1/targets").json())


@SQLITE
def test_a_sourced_forecast_is_fresh_input_though_no_sample_is_kept(http, store, monkeypatch
                                                                     ) -> None:  # noqa: ANN001
    from service import forecasting

    def fake_source(src, now, step, n, secrets_dir=None):  # noqa: ANN001, ANN202
        ts = now - now % step - n * step + step * np.arange(n, dtype=np.int64)
        values = 10 + np.sin(ts / 300.0)
        values[-1] = np.nan  # the newest complete bucket has no value yet
        return ts, values

    monkeypatch.setattr(forecasting, "read_buckets", fake_source)
    assert http.post("/v1/targets", json=scaling_target(source=SOURCE)).status_code == 201
    now = int(time.time())
    result = forecasting.refresh(store, now)
    assert result.errors == [] and result.forecasts == 1, result
    body = http.get("/v1/forecasts/web-vm", params={"metric": "cpu_cores"}).json()
    step = store.settings.forecast_step_s
    newest = now - now % step - step  # the last complete bucket, which has no value
    assert body["input_last_ts"] == newest - 1  # the last second of the bucket before it
    assert body["input_stale"] is False and not body["fallback"], body
