"""Ingest refuses what it cannot store or read back (issue 12, items 1, 2, 5, 6, 7, 10).

Each case was once answered 200 (and then broke reads for everyone) or a plain-text 500. Over
a real socket (uvicorn in a thread) on SQLite and PostgreSQL: the refusal is a named 4xx in
the documented error JSON, nothing is stored, and every read still answers 200.
"""

from __future__ import annotations

import gzip
import json
import time
import zlib

import httpx
import numpy as np
import pytest

from service import forecasting, ingest
from service.ingest import (
    MAX_ABS_VALUE,
    MAX_LABEL_NAME,
    MAX_LABEL_VALUE,
    MAX_LABELS,
    MAX_LABELS_BYTES,
    BatchError,
    label_problems,
    validate,
)
from service.intake import gunzip
from service.store import samples as sample_store

NOW = 1_700_000_000
JSON = {"content-type": "application/json"}
NDJSON = {"content-type": "application/x-ndjson"}


def sample(ts: int, value: float = 1.0, **kw) -> dict:
    out = {"entity": "vm-1", "kind": "vm", "metric": "cpu_util", "ts": ts, "value": value}
    out.update(kw)
    return out


def dumps(doc) -> bytes:  # noqa: ANN001
    """JSON as a careless client writes it: lone surrogates as ``\\udfff`` escapes, NaN bare."""
    return json.dumps(doc, ensure_ascii=True, allow_nan=True).encode()


def ndjson(*samples: dict) -> bytes:
    return b"\n".join(dumps(s) for s in samples) + b"\n"


def refused(r: httpx.Response, status: int, where: str, needle: str) -> dict:
    """Assert the documented error JSON: status, the problem's place and a phrase."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json"), r.text
    body = r.json()
    assert set(body) == {"error", "detail", "problems"}, body
    assert body["detail"].startswith(f"{where}: "), body
    wheres = [p["where"] for p in body["problems"]]
    assert where in wheres, body
    assert any(needle in p["message"] for p in body["problems"]), body
    return body


def assert_reads_and_nothing_stored(http: httpx.Client) -> None:
    r = http.get("/v1/entities")
    assert r.status_code == 200, r.text
    assert r.json()["entities"] == []


# --------------------------------------------------------------------------- labels (item 1)

BAD_LABELS = [
    ({"a": "\udfff"}, "labels.a", "lone surrogate"),
    ({"\ud800x": "v"}, "labels", "lone surrogate"),
    ({"a": "x\x00y"}, "labels.a", "control character '\\x00'"),
    ({"a\nb": "v"}, "labels", "control character '\\n'"),
    ({"a": "\x1b[31m"}, "labels.a", "control character '\\x1b'"),
    ({"a": {"b": "c"}}, "labels.a", "got object"),
    ({"a": ["x"]}, "labels.a", "got array"),
    ({"a": None}, "labels.a", "got null"),
    ({"a": float("nan")}, "labels.a", "finite number, got nan"),
    ({"a": float("inf")}, "labels.a", "finite number, got inf"),
    ({"a": 2**53 + 1}, "labels.a", "beyond ±2^53"),
    ({"": "v"}, "labels", "non-empty string"),
    ({"k" * (MAX_LABEL_NAME + 1): "v"}, "labels", f"longer than {MAX_LABEL_NAME}"),
    ({"a": "v" * (MAX_LABEL_VALUE + 1)}, "labels.a", f"longer than {MAX_LABEL_VALUE}"),
    ({f"k{i}": "v" for i in range(MAX_LABELS + 1)}, "labels", f"at most {MAX_LABELS}"),
    ({f"k{i}": "é" * 600 for i in range(14)}, "labels", f"at most {MAX_LABELS_BYTES}"),
    ("zone=a", "labels", "JSON object"),
]


def _nested(depth: int) -> dict:
    doc: dict = {"leaf": "x"}
    for _ in range(depth):
        doc = {"a": doc}
    return doc


@pytest.mark.parametrize(("labels", "field", "needle"), BAD_LABELS)
def test_label_problems_name_the_label(labels, field, needle) -> None:  # noqa: ANN001
    problems = label_problems(labels)
    assert problems, labels
    assert (field, needle) in [(f, needle) for f, m in problems if needle in m], problems


def test_labels_at_every_bound_are_accepted_and_equal_ones_are_checked_once() -> None:
    at_bounds = {f"k{i:03d}".ljust(MAX_LABEL_NAME, "x"): "v" for i in range(MAX_LABELS - 4)}
    assert len(json.dumps(at_bounds)) < MAX_LABELS_BYTES
    at_bounds.update({"n": 2**53, "f": -1.5e-300, "b": True, "ü": "ü" * MAX_LABEL_VALUE})
    assert label_problems(at_bounds) == []
    # the stored last labels of an entity are what was checked, whatever came before
    b = validate([sample(NOW, labels=at_bounds), sample(NOW + 1, labels=dict(at_bounds))], NOW, 300)
    assert b.labels == {"vm-1": at_bounds}
    with pytest.raises(BatchError) as info:
        validate([sample(NOW, labels={"a": 1}), sample(NOW + 1, labels={"a": "\x00"})], NOW, 300)
    assert [p.where for p in info.value.problems] == ["samples[1].labels.a"]


@pytest.mark.parametrize(("labels", "field", "needle"), BAD_LABELS[:11])
def test_bad_labels_get_a_named_422_and_reads_still_answer(http, labels, field, needle) -> None:  # noqa: ANN001
    t = int(time.time()) - 10
    r = http.post(
        "/v1/metrics", content=dumps({"samples": [sample(t, labels=labels)]}), headers=JSON
    )
    refused(r, 422, f"samples[0].{field}", needle)
    r = http.post(
        "/v1/metrics", content=ndjson(sample(t), sample(t + 1, labels=labels)), headers=NDJSON
    )
    refused(r, 422, f"line 2, field {field}", needle)
    assert_reads_and_nothing_stored(http)


def test_labels_nested_256_deep_are_refused_not_stored(http) -> None:  # noqa: ANN001
    t = int(time.time()) - 10
    r = http.post(
        "/v1/metrics", content=dumps({"samples": [sample(t, labels=_nested(256))]}), headers=JSON
    )
    refused(r, 422, "samples[0].labels.a", "got object")
    assert_reads_and_nothing_stored(http)


def test_stored_labels_read_back_exactly(http) -> None:  # noqa: ANN001
    t = int(time.time()) - 10
    labels = {"zone": "eu-west-1a", "rack": 4, "ratio": 0.25, "spot": False, "名前": "値 ✓"}
    r = http.post(
        "/v1/metrics", content=dumps({"samples": [sample(t, labels=labels)]}), headers=JSON
    )
    assert r.status_code == 200, r.text
    r = http.get("/v1/entities")
    assert r.status_code == 200 and r.json()["entities"][0]["labels"] == labels


# ------------------------------------------------------------ names (items 2 and 6)

BAD_NAMES = [
    ("entity", "\udfff", "lone surrogate"),
    ("entity", "\x00z", "control character '\\x00'"),
    ("metric", "cpu\udc80", "lone surrogate"),
    ("metric", "\x00z", "control character '\\x00'"),
    ("metric", "a\tb", "control character '\\t'"),
    ("unit", "\ud83d", "lone surrogate"),
    ("unit", "%\x7f", "control character '\\x7f'"),
    ("entity", "vm\x85", "control character '\\x85'"),
]


@pytest.mark.parametrize(("field", "name", "needle"), BAD_NAMES)
def test_bad_names_get_a_named_422_in_json_and_ndjson(http, field, name, needle) -> None:  # noqa: ANN001
    t = int(time.time()) - 10
    bad = sample(t, **{field: name})
    r = http.post("/v1/metrics", content=dumps({"samples": [sample(t), bad]}), headers=JSON)
    body = refused(r, 422, f"samples[1].{field}", needle)
    assert body["error"] == "BatchError"
    r = http.post("/v1/metrics", content=ndjson(sample(t), bad), headers=NDJSON)
    refused(r, 422, f"line 2, field {field}", needle)
    assert_reads_and_nothing_stored(http)


def test_names_with_every_printable_character_are_stored(http) -> None:  # noqa: ANN001
    t = int(time.time()) - 10
    names = ["..", "n/x", "n_x", "é€𝄞 space", 'q"uote\\']
    r = http.post(
        "/v1/metrics",
        headers=JSON,
        content=dumps({"samples": [sample(t, entity=n, metric=n, unit="µs") for n in names]}),
    )
    assert r.status_code == 200, r.text
    got = {e["name"]: e["metrics"] for e in http.get("/v1/entities").json()["entities"]}
    assert got == {n: [{"metric": n, "unit": "µs"}] for n in names}
    for n in names:
        r = http.get("/v1/series", params={"entity": n, "metric": n, "start": t, "end": t})
        assert r.status_code == 200 and r.json()["points"] == [[t, 1.0]], r.text


def test_error_messages_are_short_and_encodable() -> None:
    huge = {
        "entity": ["x"] * 100_000,
        "kind": "\udfff" * 1000,
        "metric": 10**4000,
        "ts": NOW,
        "value": "v" * 10_000,
    }
    with pytest.raises(BatchError) as info:
        validate([huge], NOW, 0)
    for p in info.value.problems:
        assert len(p.message) < 200, p.message
        p.message.encode("utf-8")  # no lone surrogate echoed back


def test_an_integer_of_5000_digits_is_malformed_json_not_a_500(http) -> None:  # noqa: ANN001
    body = b'{"samples": [{"entity": "a", "kind": "vm", "metric": "m", "ts": 1, "value": '
    r = http.post("/v1/metrics", content=body + b"9" * 5000 + b"}]}", headers=JSON)
    assert r.status_code == 400 and r.json()["error"] == "MalformedBodyError", r.text


# --------------------------------------------------------------------- huge values (item 7)


@pytest.mark.parametrize("value", [1.7e308, -1.7e308, MAX_ABS_VALUE * 1.0000001, 10**16])
def test_values_beyond_the_bound_get_a_named_422(http, value) -> None:  # noqa: ANN001
    t = int(time.time()) - 10
    r = http.post(
        "/v1/metrics", content=dumps({"samples": [sample(t), sample(t + 1, value)]}), headers=JSON
    )
    refused(r, 422, "samples[1].value", "largest magnitude stored")
    assert_reads_and_nothing_stored(http)


def test_values_at_the_bound_aggregate_and_forecast_without_overflow(http, store) -> None:  # noqa: ANN001
    now = int(time.time())
    start = now - now % 60 - 1200
    samples = [sample(t, MAX_ABS_VALUE) for t in range(start, now - 1)]
    samples += [sample(t, -MAX_ABS_VALUE, metric="neg") for t in range(start, now - 1)]
    r = http.post("/v1/metrics", content=dumps({"samples": samples}), headers=JSON)
    assert r.status_code == 200, r.text
    for metric, sign in (("cpu_util", 1), ("neg", -1)):
        for agg, want in (("sum", 60 * MAX_ABS_VALUE), ("mean", MAX_ABS_VALUE)):
            r = http.get(
                "/v1/series",
                params={
                    "entity": "vm-1",
                    "metric": metric,
                    "start": start,
                    "end": start + 599,
                    "step": 60,
                    "agg": agg,
                },
            )
            assert r.status_code == 200, r.text
            pts = r.json()["points"]
            assert len(pts) == 10 and all(v == sign * want for _, v in pts), pts
    res = forecasting.refresh(store, now)
    assert res.forecasts == 2 and not res.errors, res
    for metric, sign in (("cpu_util", 1), ("neg", -1)):
        r = http.get("/v1/forecasts/vm-1", params={"metric": metric})
        assert r.status_code == 200, r.text
        steps = r.json()["steps"]
        assert len(steps) == store.settings.forecast_horizon_steps
        for col in ("mean", *forecasting.QUANTILES):
            got = np.array([s[col] for s in steps], dtype=float)  # a null would be NaN
            assert np.isfinite(got).all() and np.allclose(got, sign * MAX_ABS_VALUE), (col, got)


# --------------------------------------------------------------- gzip members (item 5)


def test_every_gzip_member_is_inflated() -> None:
    a, b, c = b"first,", b"", b"third" * 1000
    assert gunzip(gzip.compress(a) + gzip.compress(b) + gzip.compress(c), 10**6) == a + b + c


@pytest.mark.parametrize(
    ("tail", "needle"),
    [
        (b"garbage", "trailing data after gzip member 1"),
        (b"\x00\x00\x00\x00", "trailing data after gzip member 1"),
        (gzip.compress(b"x")[:-3], "truncated gzip body"),
        (b"\x1f\x8b\x08\x00junk", "truncated gzip body (member 2)"),
        (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff\x07", "malformed gzip body (member 2)"),
    ],
)
def test_trailing_garbage_after_gzip_members_is_400(tail: bytes, needle: str) -> None:
    with pytest.raises(ingest.MalformedBodyError) as info:
        gunzip(gzip.compress(b"ok") + tail, 10**6)
    assert needle in str(info.value)


def test_the_limit_counts_every_member_while_inflating() -> None:
    member = gzip.compress(b"\x00" * 600)
    assert len(gunzip(member * 10, 6000)) == 6000
    with pytest.raises(ingest.BodyTooLargeError):
        gunzip(member * 11, 6000)
    # a bomb in the second member is stopped after `limit` bytes, not inflated whole
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    big = bomb.compress(b"\x00" * 50_000_000) + bomb.flush()
    with pytest.raises(ingest.BodyTooLargeError):
        gunzip(gzip.compress(b"x") + big, 1 << 20)


def test_a_gzip_body_of_two_members_stores_both_over_http(http) -> None:  # noqa: ANN001
    t = int(time.time()) - 10
    one = gzip.compress(ndjson(sample(t, 1.0)))
    two = gzip.compress(ndjson(sample(t + 1, 2.0), sample(t + 2, 3.0)))
    headers = {**NDJSON, "content-encoding": "gzip"}
    r = http.post("/v1/metrics", content=one + two, headers=headers)
    assert r.status_code == 200 and r.json() == {"stored": 3}, r.text
    r = http.get(
        "/v1/series", params={"entity": "vm-1", "metric": "cpu_util", "start": t, "end": t + 2}
    )
    assert r.json()["points"] == [[t, 1.0], [t + 1, 2.0], [t + 2, 3.0]]
    r = http.post(
        "/v1/metrics", content=gzip.compress(ndjson(sample(t + 3, 4.0))) + b"junk", headers=headers
    )
    assert r.status_code == 400 and "trailing data" in r.json()["detail"], r.text
    r = http.get(
        "/v1/series", params={"entity": "vm-1", "metric": "cpu_util", "start": t, "end": t + 3}
    )
    assert len(r.json()["points"]) == 3  # the refused body stored nothing


def test_labels_stored_before_validation_are_still_read(http, store) -> None:  # noqa: ANN001
    """A store written before labels were checked keeps answering GET /v1/entities."""
    t = int(time.time()) - 10
    legacy = {
        "a": "\udfff",
        "\ud800k": "v",
        "deep": _nested(256),
        "nan": float("nan"),
        "ok": "kept",
    }
    if store.dialect == "postgresql":
        del legacy["nan"]  # PostgreSQL's json type never took NaN (that insert failed)
    batch = validate([sample(t)], t + 10, 300)
    batch.labels = {"vm-1": legacy}  # what ingest accepted then, written past the checks
    sample_store.ingest(store, batch)
    r = http.get("/v1/entities")
    assert r.status_code == 200, r.text
    labels = r.json()["entities"][0]["labels"]
    assert labels["a"] == "'\\udfff'" and labels["'\\ud800k'"] == "v"
    assert labels["ok"] == "kept" and labels.get("nan", "nan") == "nan"
    assert labels["deep"].startswith("{'a': {'a': ") and len(labels["deep"]) == MAX_LABEL_VALUE
