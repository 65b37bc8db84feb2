"""Remote-write never loses a whole batch for one bad series (issue 12, items 7, 9, 10).

Over a real socket (``tidewise`` app under uvicorn in a thread, tokens on), SQLite and
PostgreSQL: a series Tidewise cannot store is skipped and counted (in the answer, on
``/metrics`` and in a log line) while the rest of the request is stored and answered 2xx,
because Prometheus drops a batch for good on any 4xx.
"""

from __future__ import annotations

import logging
import time

import cramjam
import httpx
import pytest

from service import remote_write
from service.ingest import MAX_ABS_VALUE
from tests.daemon.conftest import bearer
from tests.daemon.test_remote_write import RW_HEADERS, write_request


def post(http: httpx.Client, body: bytes) -> httpx.Response:
    return http.post("/api/v1/write", content=body, headers={**RW_HEADERS, **bearer("ingest")})


def points(http: httpx.Client, entity: str, metric: str, start: int, end: int) -> list:
    r = http.get(
        "/v1/series", params={"entity": entity, "metric": metric, "start": start, "end": end}
    )
    assert r.status_code == 200, r.text
    return [tuple(p) for p in r.json()["points"]]


def skipped_counter(http: httpx.Client, reason: str) -> float:
    text = http.get("/metrics").text
    line = f'tidewise_remote_write_skipped_samples_total{{reason="{reason}"}} '
    found = [ln for ln in text.splitlines() if ln.startswith(line)]
    return float(found[0].split()[-1]) if found else 0.0


def register(http: httpx.Client, now: int, kinds: dict[str, str]) -> None:
    """Create entities of the given kinds through POST /v1/metrics (one sample each)."""
    samples = [
        {"entity": e, "kind": k, "metric": "requests", "ts": now, "value": 1}
        for e, k in kinds.items()
    ]
    r = http.post("/v1/metrics", headers=bearer("ingest"), json={"samples": samples})
    assert r.status_code == 200, r.text


@pytest.fixture(autouse=True)
def _fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    # the once-per-10-minutes warning memory is per process: start each test without it
    monkeypatch.setattr(remote_write, "_last_warned", {})


def test_a_kind_conflict_skips_that_series_and_stores_the_rest(
    http: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    now = int(time.time()) - 5
    register(http, now, {"db-1": "server", "db-2": "function"})
    body = write_request(
        [
            ({"__name__": "up", "instance": "web-1", "job": "node"}, [(1.0, now * 1000)]),
            (
                {"__name__": "up", "instance": "db-1", "job": "node"},
                [(1.0, now * 1000), (1.0, (now + 1) * 1000)],
            ),
            ({"__name__": "node_load1", "instance": "web-2"}, [(0.5, now * 1000)]),
            ({"__name__": "node_load1", "instance": "db-2"}, [(0.5, now * 1000)]),
        ]
    )
    with caplog.at_level(logging.WARNING, logger="tidewise.remote_write"):
        r = post(http, body)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 2
    assert r.json()["skipped"]["kind_conflict"] == 3
    assert points(http, "web-1", "up", now, now) == [(now, 1.0)]
    assert points(http, "web-2", "node_load1", now, now) == [(now, 0.5)]
    ents = {e["name"]: e for e in http.get("/v1/entities").json()["entities"]}
    assert ents["db-1"]["kind"] == "server" and ents["db-1"]["labels"] == {}  # untouched
    assert [m["metric"] for m in ents["db-1"]["metrics"]] == ["requests"]
    assert skipped_counter(http, "kind_conflict") == 3.0
    warned = [rec.getMessage() for rec in caplog.records if "kind_conflict=3" in rec.getMessage()]
    assert warned and "registered as kind" in warned[0], caplog.text
    # the next scrape: counted again, but the warning is not repeated
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tidewise.remote_write"):
        assert post(http, body).status_code == 200
    assert skipped_counter(http, "kind_conflict") == 6.0
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]


def test_a_request_of_conflicts_only_is_answered_2xx_with_nothing_stored(
    http: httpx.Client,
) -> None:
    now = int(time.time()) - 5
    register(http, now, {"db-1": "server"})
    r = post(http, write_request([({"__name__": "up", "instance": "db-1"}, [(1.0, now * 1000)])]))
    assert r.status_code == 200 and r.json()["stored"] == 0, r.text
    assert r.json()["skipped"]["kind_conflict"] == 1


def test_unstorable_labels_and_huge_values_are_skipped_not_fatal(http: httpx.Client) -> None:
    now = int(time.time()) - 5
    body = write_request(
        [
            (
                {"__name__": "up", "instance": "ok"},
                [(1.0, now * 1000), (MAX_ABS_VALUE, (now + 1) * 1000)],
            ),
            ({"__name__": "up", "instance": "ok", "dev": "a\x00b"}, [(1.0, now * 1000)]),
            ({"__name__": "up", "instance": "tab\there"}, [(1.0, now * 1000)]),
            ({"__name__": "up", "instance": "x" * 256}, [(1.0, now * 1000)]),
            ({"__name__": "up", "instance": "big-job", "job": "j" * 1025}, [(1.0, now * 1000)]),
            (
                {"__name__": "huge", "instance": "ok"},
                [(1.7e308, now * 1000), (-1e16, (now + 1) * 1000), (2.0, (now + 2) * 1000)],
            ),
        ]
    )
    r = post(http, body)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 3
    assert r.json()["skipped"]["invalid_label"] == 4
    assert r.json()["skipped"]["out_of_range"] == 2
    assert points(http, "ok", "up", now, now + 1) == [(now, 1.0), (now + 1, MAX_ABS_VALUE)]
    assert points(http, "ok", "huge", now, now + 2) == [(now + 2, 2.0)]
    assert [e["name"] for e in http.get("/v1/entities").json()["entities"]] == ["ok"]
    assert skipped_counter(http, "invalid_label") == 4.0
    assert skipped_counter(http, "out_of_range") == 2.0


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (b"\x80\x80\x80\x80\x10", 413),  # 4 GiB: beyond snappy's own limit, still "too large"
        (b"\xff\xff\xff\xff\x0f", 413),  # 4 GiB - 1
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 413),  # 2^64 - 1
        (b"\x80" * 10, 400),  # no end to the varint
    ],
)
def test_a_snappy_header_claiming_gigabytes_is_413_not_400(
    http: httpx.Client, header: bytes, status: int
) -> None:
    r = post(http, header + b"\x00" * 64)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    if status == 413:
        assert "exceeds the limit" in detail and "TIDEWISE_MAX_BODY_BYTES" in detail
    else:
        assert "malformed snappy body" in detail


def test_a_body_within_the_declared_length_still_decompresses(http: httpx.Client) -> None:
    now = int(time.time()) - 5
    raw = write_request([({"__name__": "up", "instance": "h"}, [(1.0, now * 1000)])])
    assert cramjam.snappy.decompress_raw_len(raw) < 128  # one-byte varint
    assert post(http, raw).status_code == 200
