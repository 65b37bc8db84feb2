"""Prometheus remote-write receiver (POST /api/v1/write), in process, on SQLite and PostgreSQL.

Bodies are built with the same protobuf classes and snappy block compression Prometheus
uses; the end-to-end test with the real Prometheus is ``test_remote_write_e2e.py``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import cramjam
import pytest
from fastapi.testclient import TestClient

from service import prompb
from service.api import create_app
from service.deps import get_app_settings
from service.store.db import Store

INGEST = {"Authorization": "Bearer ingest-token-0123456789"}
READ = {"Authorization": "Bearer read-token-0123456789ab"}
RW_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def write_request(series: list[tuple[dict[str, str], list[tuple[float, int]]]]) -> bytes:
    """Snappy block-compressed WriteRequest of (labels, [(value, timestamp ms)]) series."""
    req = prompb.WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name in sorted(labels):  # Prometheus sends labels sorted by name
            ts.labels.add(name=name, value=labels[name])
        for value, t_ms in samples:
            ts.samples.add(value=value, timestamp=t_ms)
    return bytes(cramjam.snappy.compress_raw(req.SerializeToString()))


@pytest.fixture
def client(store: Store) -> Iterator[TestClient]:
    app = create_app(store.settings, store)
    with TestClient(app) as c:
        c.headers.update(INGEST)
        yield c


def post(client: TestClient, body: bytes, **headers: str):  # noqa: ANN201
    return client.post("/api/v1/write", content=body, headers={**RW_HEADERS, **headers})


def points(client: TestClient, entity: str, metric: str, start: int, end: int) -> list:
    r = client.get(
        "/v1/series",
        params={"entity": entity, "metric": metric, "start": start, "end": end},
        headers=READ,
    )
    assert r.status_code == 200, r.text
    return [tuple(p) for p in r.json()["points"]]


def test_series_are_mapped_to_entities_and_metrics(client: TestClient) -> None:
    t0 = int(time.time()) - 60
    cpu = {
        "__name__": "node_cpu_seconds_total",
        "instance": "h1:9100",
        "job": "node",
        "cpu": "0",
        "mode": "idle",
    }
    load = {"__name__": "node_load1", "instance": "h1:9100", "job": "node"}
    body = write_request(
        [
            (cpu, [(100.5, t0 * 1000 + 250), (101.25, (t0 + 1) * 1000 + 999)]),
            (load, [(0.75, t0 * 1000)]),
        ]
    )
    r = post(client, body)
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 3
    assert sum(r.json()["skipped"].values()) == 0

    # milliseconds floored to the second; the counter is stored as sent
    metric = 'node_cpu_seconds_total{cpu="0",mode="idle"}'
    assert points(client, "h1:9100", metric, t0 - 5, t0 + 5) == [(t0, 100.5), (t0 + 1, 101.25)]
    assert points(client, "h1:9100", "node_load1", t0 - 5, t0 + 5) == [(t0, 0.75)]

    ents = client.get("/v1/entities", headers=READ).json()["entities"]
    assert [e["name"] for e in ents] == ["h1:9100"]
    assert ents[0]["kind"] == "vm"
    assert ents[0]["labels"] == {"job": "node"}  # job describes the machine, not the series
    units = {m["metric"]: m["unit"] for m in ents[0]["metrics"]}
    assert units == {metric: "seconds (counter)", "node_load1": ""}


def test_last_write_wins_within_a_second_and_across_requests(client: TestClient) -> None:
    t0 = int(time.time()) - 30
    up = {"__name__": "up", "instance": "h2", "job": "node"}
    r = post(client, write_request([(up, [(1.0, t0 * 1000 + 100), (0.0, t0 * 1000 + 900)])]))
    assert r.status_code == 200 and r.json()["stored"] == 2
    assert points(client, "h2", "up", t0, t0) == [(t0, 0.0)]
    r = post(client, write_request([(up, [(7.0, t0 * 1000 + 500)])]))
    assert r.status_code == 200
    assert points(client, "h2", "up", t0, t0) == [(t0, 7.0)]


def test_stale_markers_non_finite_old_and_unmapped_samples_are_skipped(
    client: TestClient,
) -> None:
    now = int(time.time())
    old = now - client.app.state.settings.raw_retention_s - 3600
    g = {"__name__": "g", "instance": "h3"}
    body = write_request(
        [
            (
                g,
                [
                    (1.0, (now - 4) * 1000),
                    (prompb.stale_nan(), (now - 3) * 1000),
                    (float("nan"), (now - 2) * 1000),
                    (float("inf"), (now - 1) * 1000),
                    (5.0, old * 1000),
                ],
            ),
            ({"__name__": "cluster_sum"}, [(3.0, now * 1000), (4.0, now * 1000)]),
            ({"__name__": "x" * 130, "instance": "h3"}, [(1.0, now * 1000)]),
        ]
    )
    r = post(client, body)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "stored": 1,
        "skipped": {
            "stale": 1,
            "non_finite": 2,
            "out_of_range": 0,
            "too_old": 1,
            "no_entity_label": 2,
            "metric_too_long": 1,
            "invalid_label": 0,
            "kind_conflict": 0,
            "histogram": 0,
        },
    }
    assert points(client, "h3", "g", now - 10, now) == [(now - 4, 1.0)]


def test_native_histograms_are_counted_not_stored_and_exemplars_ignored(
    client: TestClient,
) -> None:
    now = int(time.time())
    req = prompb.WriteRequest()
    ts = req.timeseries.add()
    ts.labels.add(name="__name__", value="http_latency_seconds")
    ts.labels.add(name="instance", value="h8")
    ts.samples.add(value=1.5, timestamp=now * 1000)
    # opaque upstream Histogram / Exemplar messages (field 1 = count_int 5 and 7)
    ts.histograms.extend([b"\x08\x05", b"\x08\x07"])
    ts.exemplars.append(b"\x12\x00")
    r = post(client, bytes(cramjam.snappy.compress_raw(req.SerializeToString())))
    assert r.status_code == 200, r.text
    assert r.json()["stored"] == 1 and r.json()["skipped"]["histogram"] == 2
    assert points(client, "h8", "http_latency_seconds", now, now) == [(now, 1.5)]


@pytest.mark.parametrize(
    ("body", "headers", "status", "needle"),
    [
        (b"\x10\x00garbage", {}, 400, "malformed snappy body"),
        (b"\xff\x06\x00\x00sNaPpY" + b"\x00" * 8, {}, 400, "framed"),
        (bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff")), {}, 400, "malformed protobuf"),
        (b"x", {"Content-Type": "application/json"}, 415, "application/x-protobuf"),
        (b"x", {"Content-Encoding": "gzip"}, 415, "snappy"),
        (
            b"x",
            {"Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"},
            415,
            "remote-write 1.0",
        ),
    ],
)
def test_bad_requests_are_refused_naming_the_problem(
    client: TestClient, body: bytes, headers: dict, status: int, needle: str
) -> None:
    r = post(client, body, **headers)
    assert r.status_code == status, r.text
    assert needle in r.json()["detail"]


def test_series_without_name_and_future_sample_reject_the_whole_batch(
    client: TestClient,
) -> None:
    now = int(time.time())
    good = ({"__name__": "g", "instance": "h4"}, [(1.0, now * 1000)])
    r = post(client, write_request([good, ({"instance": "h4"}, [(1.0, now * 1000)])]))
    assert r.status_code == 400
    assert r.json()["problems"][0]["where"] == "timeseries[1].labels"
    assert "__name__" in r.json()["detail"]

    future = ({"__name__": "f", "instance": "h4", "dev": "a"}, [(1.0, (now + 7200) * 1000)])
    r = post(client, write_request([good, future]))
    assert r.status_code == 400
    prob = r.json()["problems"][0]
    assert prob["where"] == "timeseries[1].samples[0].timestamp"
    assert prob["message"].startswith('f{dev="a"}: ') and "in the future" in prob["message"]
    # nothing of either batch was stored
    assert client.get("/v1/entities", headers=READ).json()["entities"] == []


def test_size_limits(store: Store) -> None:
    settings = store.settings.model_copy(update={"max_body_bytes": 8192})
    with TestClient(create_app(settings, store)) as c:
        c.headers.update(INGEST)
        r = post(c, b"\x00" * 9000)
        assert r.status_code == 413
        # 100 kB of zeros compress to ~5 kB: refused from the declared decompressed length
        bomb = bytes(cramjam.snappy.compress_raw(b"\x00" * 100_000))
        assert len(bomb) < 8192
        r = post(c, bomb)
        assert r.status_code == 413
        assert "decompressed body of 100000 bytes" in r.json()["detail"]


def test_needs_an_ingest_token(client: TestClient) -> None:
    body = write_request([({"__name__": "g", "instance": "h5"}, [(1.0, int(time.time()) * 1000)])])
    r = client.post("/api/v1/write", content=body, headers={**RW_HEADERS, "Authorization": ""})
    assert r.status_code == 401
    r = post(client, body, Authorization=READ["Authorization"])
    assert r.status_code == 403
    assert "ingest" in r.json()["detail"]
    assert post(client, body).status_code == 200


def test_mapping_is_configurable(client: TestClient) -> None:
    mapped = client.app.state.settings.model_copy(
        update={
            "remote_write_entity_label": "host",
            "remote_write_kind": "server",
            "remote_write_entity_labels": "job,region",
            "remote_write_drop_labels": "replica",
        }
    )
    client.app.dependency_overrides[get_app_settings] = lambda: mapped
    now = int(time.time())
    labels = {
        "__name__": "power_watts",
        "host": "rack1-07",
        "instance": "10.0.0.7:9100",
        "job": "ipmi",
        "region": "eu",
        "replica": "a",
        "psu": "1",
    }
    r = post(client, write_request([(labels, [(412.0, now * 1000)])]))
    assert r.status_code == 200, r.text
    ent = client.get("/v1/entities", headers=READ).json()["entities"][0]
    assert (ent["name"], ent["kind"], ent["labels"]) == (
        "rack1-07",
        "server",
        {"job": "ipmi", "region": "eu"},
    )
    assert ent["metrics"] == [
        {"metric": 'power_watts{instance="10.0.0.7:9100",psu="1"}', "unit": "watts"}
    ]


def test_label_values_are_escaped_in_metric_names() -> None:
    from service.remote_write import metric_name

    assert metric_name("m", {"b": 'say "hi"\\', "a": "x\ny"}) == 'm{a="x\\ny",b="say \\"hi\\"\\\\"}'
    assert metric_name("m", {}) == "m"


def test_proto_parameter_of_remote_write_1_0_is_accepted(client: TestClient) -> None:
    body = write_request([({"__name__": "g", "instance": "h7"}, [(2.5, int(time.time()) * 1000)])])
    r = post(
        client, body, **{"Content-Type": "application/x-protobuf;proto=prometheus.WriteRequest"}
    )
    assert r.status_code == 200 and r.json()["stored"] == 1


def test_docs_name_only_remote_write_and_dashboard_settings_that_exist() -> None:
    import re
    from pathlib import Path

    from service.config import Settings

    # the Daemon I/O page of the docs (remote-write and the dashboard), as a whole
    section = (Path(__file__).resolve().parents[2] / "docs" / "daemon-io.md").read_text()
    named = set(re.findall(r"TIDEWISE_((?:REMOTE_WRITE_[A-Z_]+)|REPLAY_REPORT)\b", section))
    assert named == {
        "REMOTE_WRITE_ENTITY_LABEL",
        "REMOTE_WRITE_KIND",
        "REMOTE_WRITE_ENTITY_LABELS",
        "REMOTE_WRITE_DROP_LABELS",
        "REPLAY_REPORT",
    }
    assert {n.lower() for n in named} <= set(Settings.model_fields)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TIDEWISE_REMOTE_WRITE_KIND", "container"), ("TIDEWISE_REMOTE_WRITE_ENTITY_LABEL", "")],
)
def test_a_bad_mapping_setting_stops_serve_with_one_error_line(
    tmp_path: Path, variable: str, value: str
) -> None:
    import os
    import subprocess
    import sys

    env = dict(os.environ, TIDEWISE_DB_URL=f"sqlite:///{tmp_path}/x.db", **{variable: value})
    proc = subprocess.run(
        [sys.executable, "-m", "service.cli", "serve"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: invalid configuration: ")
    assert f"{variable}: " in lines[0]
    assert not (tmp_path / "x.db").exists()  # refused before anything is opened


def test_a_permanent_skip_reason_is_warned_once_not_every_scrape(
    client: TestClient, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import logging

    from service import remote_write

    monkeypatch.setattr(remote_write, "_last_warned", {})
    long_name = "node_exporter_build_info_" + "v" * 120
    now = int(time.time())
    with caplog.at_level(logging.DEBUG, logger="tidewise.remote_write"):
        for k in range(3):  # three scrapes of the same series
            body = write_request(
                [({"__name__": long_name, "instance": "h9"}, [(1.0, (now - k) * 1000)])]
            )
            assert post(client, body).json()["skipped"]["metric_too_long"] == 1
    records = [r for r in caplog.records if r.name == "tidewise.remote_write"]
    assert [r.levelno for r in records] == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert f"metric_too_long=1 (e.g. {long_name[:120]})" in records[0].getMessage()
