"""Property-based ingest: whatever a client sends, all of it is stored or none of it is.

Hypothesis generates ingest requests — JSON and NDJSON batches (identity, gzip of one or
several members, gzip followed by garbage, truncated JSON) whose samples are valid or carry
one defect each, and Prometheus remote-write requests — and sends each to the real daemon
over a socket (uvicorn in a thread, tokens on), on SQLite and PostgreSQL. For every request:

* the answer is the one the README documents for it: 200 with every sample stored, or a
  4xx (400 malformed body, 409 kind conflict with the store, 422 a bad sample, naming each
  bad item and field) with **nothing** stored — never a 5xx, never a partial write;
* the store afterwards equals the store before with the batch applied (last write wins,
  labels replaced, kinds and units fixed at creation) or unchanged, compared row by row;
* every read of what is stored still answers 200: ``GET /v1/entities`` (which must list
  exactly the stored entities, labels and series) and ``GET /v1/series``, raw and by step.

Remote-write follows its own documented contract: series that cannot be stored are skipped
and counted by reason, the rest stored; only a series without ``__name__`` or a timestamp in
the future refuses the request (400), and then nothing is stored.

Runtime is bounded (``max_examples``), the examples are derandomized (the same on every run
and in CI) and no example database is kept.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import math
import time
from typing import Any

import cramjam
import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from service import prompb, remote_write
from service.ingest import MAX_ABS_VALUE, MIN_TS
from service.store.tables import Entity, Sample, Series
from tests.daemon.conftest import bearer

PROPERTY_SETTINGS = settings(
    max_examples=60,
    derandomize=True,  # reproducible: the same examples on every run
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

# Entity names, each with the kind valid samples give it (another kind is a conflict).
ENTITIES = {"vm-1": "vm", "fn/a": "function", "srv é": "server", "..": "vm", "n_x": "function"}
# Not in the canonical metric list (whose names carry default units).
METRICS = ["m1", "n/x", "n_x", "é m ✓", "..", 'q"uote']
UNITS = ["", "ms", "µs", "req/s"]
NAN = float("nan")

safe_text = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=12
)
label_value = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=("Cc", "Cs")), max_size=20),
    st.integers(-(2**53), 2**53),
    st.floats(-(2.0**53), 2.0**53, allow_nan=False),
    st.booleans(),
)
good_labels = st.dictionaries(safe_text, label_value, max_size=4)

# (field, bad value) — one defect per sample; "-" deletes the field, "?" adds an unknown one.
FUTURE, ANCIENT = object(), object()
DEFECTS: list[tuple[str, Any]] = [
    ("entity", ""),
    ("entity", "a\x00b"),
    ("entity", "\udfff"),
    ("entity", "x" * 256),
    ("entity", 7),
    ("metric", "m\x1f"),
    ("metric", "\ud800"),
    ("metric", "x" * 129),
    ("metric", None),
    ("kind", "pod"),
    ("kind", ["vm"]),
    ("ts", FUTURE),
    ("ts", ANCIENT),
    ("ts", MIN_TS - 1),
    ("ts", "yesterday"),
    ("ts", "2024-05-01T12:00:00"),
    ("ts", NAN),
    ("value", NAN),
    ("value", float("inf")),
    ("value", 1.7e308),
    ("value", -1e16),
    ("value", 10**400),
    ("value", "1"),
    ("value", True),
    ("value", None),
    ("labels", {"a": {"b": "c"}}),
    ("labels", {"a": None}),
    ("labels", {"a": NAN}),
    ("labels", {"a": "\udfff"}),
    ("labels", {"a\n": "x"}),
    ("labels", {f"k{i}": i for i in range(65)}),
    ("labels", ["a"]),
    ("labels", {"a": 2**60}),
    ("labels", {"a": "v" * 1025}),
    ("unit", 5),
    ("unit", "u" * 65),
    ("unit", "\x00"),
    ("?", "extra"),
    ("-", "entity"),
    ("-", "value"),
    ("-", "ts"),
]
#: Defects found after the kind check (the sample still registers its entity's kind).
LATE = {"labels", "unit", "extra"}


@st.composite
def samples(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """A sample (ts as an offset from now) and the field of its defect, or None."""
    entity = draw(st.sampled_from(sorted(ENTITIES)))
    kind = ENTITIES[entity]
    if draw(st.integers(0, 9)) == 0:  # the same name with another kind
        kind = draw(st.sampled_from(sorted({"vm", "function", "server"} - {kind})))
    s: dict[str, Any] = {
        "entity": entity,
        "kind": kind,
        "metric": draw(st.sampled_from(METRICS)),
        "ts": (
            "offset",
            draw(st.integers(-3000, 0)),
            draw(st.sampled_from(["int", "float", "iso"])),
        ),
        "value": draw(
            st.one_of(
                st.floats(-MAX_ABS_VALUE, MAX_ABS_VALUE, allow_nan=False),
                st.integers(-(10**12), 10**12),
                st.sampled_from([MAX_ABS_VALUE, -MAX_ABS_VALUE, 0.0, -0.0]),
            )
        ),
    }
    if draw(st.booleans()):
        s["labels"] = draw(st.one_of(good_labels, st.none()))
    if draw(st.integers(0, 3)) == 0:
        s["unit"] = draw(st.sampled_from(UNITS))
    if draw(st.integers(0, 11)):  # one sample in 12 carries a defect
        return s, None
    field, bad = draw(st.sampled_from(DEFECTS))
    if field == "-":
        del s[bad]
        return s, bad
    if field == "?":
        s[bad] = 1
        return s, bad
    s[field] = bad
    return s, field


def resolve_ts(raw: Any, now: int) -> tuple[Any, int | None]:  # noqa: ANN401
    """The wire form of a generated ts and the second it means (None when not a valid ts)."""
    if raw is FUTURE:
        return now + 100_000, None
    if raw is ANCIENT:
        return now - 60 * 86_400, None  # older than the raw retention
    if isinstance(raw, tuple):
        _, offset, form = raw
        t = now - 5 + offset
        if form == "float":
            return t + 0.75, t
        if form == "iso":
            return dt.datetime.fromtimestamp(t, dt.UTC).isoformat().replace("+00:00", "Z"), t
        return t, t
    return raw, None


def dumps(doc: Any) -> bytes:  # noqa: ANN401
    """JSON as a careless client writes it: NaN bare, lone surrogates as escapes."""
    return json.dumps(doc, ensure_ascii=True, allow_nan=True).encode()


def gzip_members(data: bytes, cuts: list[int]) -> bytes:
    """``data`` gzipped as one member per piece between the (sorted) cut offsets."""
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    return b"".join(gzip.compress(data[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))


# --------------------------------------------------------------------------- the store


def snapshot(store: Any) -> dict[str, Any]:  # noqa: ANN401
    """Everything ingest writes: entities (kind, labels), series (unit) and samples."""
    with store.engine.connect() as conn:
        ents = {
            n: (k, lab or {})
            for n, k, lab in conn.execute(select(Entity.name, Entity.kind, Entity.labels))
        }
        units = {
            (e, m): u
            for e, m, u in conn.execute(
                select(Entity.name, Series.metric, Series.unit).join(
                    Entity, Entity.id == Series.entity_id
                )
            )
        }
        points = {
            (e, m, int(t)): float(v)
            for e, m, t, v in conn.execute(
                select(Entity.name, Series.metric, Sample.ts, Sample.value)
                .join(Series, Series.id == Sample.series_id)
                .join(Entity, Entity.id == Series.entity_id)
            )
        }
    return {"entities": ents, "units": units, "points": points}


def apply(before: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    """The store after an accepted batch of parsed samples (README write semantics)."""
    ents = dict(before["entities"])
    units = dict(before["units"])
    points = dict(before["points"])
    batch_units: dict[tuple[str, str], str] = {}
    for s in items:
        if s["entity"] not in ents:
            ents[s["entity"]] = (s["kind"], {})
        if s.get("labels") is not None:
            ents[s["entity"]] = (ents[s["entity"]][0], s["labels"])
        if s.get("unit") is not None:
            batch_units[(s["entity"], s["metric"])] = s["unit"]
        points[(s["entity"], s["metric"], s["t"])] = float(s["value"])
    for s in items:
        key = (s["entity"], s["metric"])
        if key not in units:
            units[key] = batch_units.get(key, "")
    return {"entities": ents, "units": units, "points": points}


def check_reads(http: httpx.Client, state: dict[str, Any], touched: set[tuple[str, str]]) -> None:
    """Every read of what is stored answers 200 and shows exactly what is stored."""
    r = http.get("/v1/entities")
    assert r.status_code == 200, r.text
    listed = {
        e["name"]: (e["kind"], e["labels"], {m["metric"]: m["unit"] for m in e["metrics"]})
        for e in r.json()["entities"]
    }
    want = {
        n: (k, lab, {m: u for (e, m), u in state["units"].items() if e == n})
        for n, (k, lab) in state["entities"].items()
    }
    assert listed == want
    for entity, metric in sorted(touched):
        pts = sorted(
            (t, v) for (e, m, t), v in state["points"].items() if (e, m) == (entity, metric)
        )
        if not pts:
            continue
        params = {"entity": entity, "metric": metric, "start": pts[0][0], "end": pts[-1][0]}
        r = http.get("/v1/series", params=params)
        assert r.status_code == 200, r.text
        assert [tuple(p) for p in r.json()["points"]] == pts
        r = http.get("/v1/series", params={**params, "step": 60, "agg": "sum"})
        assert r.status_code == 200, r.text
        got = r.json()["points"]
        assert got and all(isinstance(v, float) and math.isfinite(v) for _, v in got), got


# --------------------------------------------------------------------------- JSON / NDJSON


def expected_outcome(
    items: list[tuple[dict[str, Any], str | None]], stored_kinds: dict[str, str]
) -> tuple[int, dict[int, set[str]]]:
    """Status and {item: fields} the validation must name, from how the batch was built."""
    problems: dict[int, set[str]] = {}
    kinds: dict[str, str] = {}
    first: dict[str, int] = {}
    for i, (s, defect) in enumerate(items):
        if defect is not None and defect not in LATE:
            problems[i] = {defect}
            continue
        known = kinds.setdefault(s["entity"], s["kind"])
        first.setdefault(s["entity"], i)
        if known != s["kind"]:
            problems[i] = {"kind"}
        elif defect is not None:
            problems[i] = {defect}
    if problems:
        return 422, problems
    conflicts = {first[e]: {"kind"} for e, k in kinds.items() if stored_kinds.get(e, k) != k}
    return (409, conflicts) if conflicts else (200, {})


@st.composite
def ingest_requests(draw: st.DrawFn) -> dict[str, Any]:
    """A batch, its media type and encoding, and what is done to its bytes."""
    return {
        "items": draw(st.lists(samples(), max_size=8)),
        "media": draw(st.sampled_from(["json", "ndjson"])),
        "encoding": draw(st.sampled_from(["identity", "identity", "gzip", "gzip-members"])),
        "cuts": draw(st.lists(st.integers(0, 4000), min_size=1, max_size=3)),
        "damage": draw(st.sampled_from([None] * 6 + ["truncate", "garbage"])),
    }


@PROPERTY_SETTINGS
@given(req=ingest_requests())
def test_json_and_ndjson_bodies_are_stored_whole_or_not_at_all(
    http: httpx.Client,
    store: Any,  # noqa: ANN401
    req: dict[str, Any],
) -> None:
    now = int(time.time())
    items, wire = [], []
    for s, defect in req["items"]:
        s = dict(s)
        if "ts" in s:
            s["ts"], t = resolve_ts(s["ts"], now)
        else:
            t = None
        wire.append(s)
        items.append(({**s, "t": t}, defect))
    if req["media"] == "json":
        body, ctype = dumps({"samples": wire}), "application/json"
    else:
        body, ctype = b"".join(dumps(s) + b"\n" for s in wire), "application/x-ndjson"
    status_400 = False
    if req["damage"] == "truncate" and req["media"] == "json":
        body, status_400 = body[: len(body) // 2], True
    headers = {**bearer("ingest"), "content-type": ctype}
    if req["encoding"] != "identity" or req["damage"] == "garbage":
        cuts = req["cuts"] if req["encoding"] == "gzip-members" else []
        body = gzip_members(body, cuts)
        headers["content-encoding"] = "gzip"
        if req["damage"] == "garbage":
            body, status_400 = body + b"\x00garbage", True

    before = snapshot(store)
    r = http.post("/v1/metrics", content=body, headers=headers)
    event(f"{req['media']} {req['encoding']}: {r.status_code}")  # --hypothesis-show-statistics
    assert r.status_code < 500, r.text
    status, named = expected_outcome(items, {n: k for n, (k, _) in before["entities"].items()})
    if status_400:
        status, named = 400, {}
    assert r.status_code == status, (r.text, req)
    if status == 200:
        assert r.json() == {"stored": len(items)}
        after = apply(before, [s for s, _ in items])
    else:
        err = r.json()
        assert set(err) <= {"error", "detail", "problems"} and err["detail"], err
        if named:
            got: dict[int, set[str]] = {}
            for p in err["problems"]:
                i = p["item"] if req["media"] == "json" else p["line"] - 1
                got.setdefault(i, set()).add(p["field"].split(".")[0])
            assert got == named, (err, req)
        after = before
    assert snapshot(store) == after  # all or nothing, row by row
    check_reads(http, after, {(s["entity"], s["metric"]) for s, d in items if d is None})


# --------------------------------------------------------------------------- remote-write

RW_NAMES = ["up", "node_load1", "req_total", "lat_seconds", "bad\x00name"]
RW_INSTANCES = ["h1", "h/2", "srv", "", "tab\th", "x" * 256, None]
RW_JOBS = [None, None, "node", "é", "j" * 1025, "a\x01"]
RW_DEVS = [None, None, "0", 'a"b', "new\nline"]
RW_VALUES = st.one_of(
    st.floats(-MAX_ABS_VALUE, MAX_ABS_VALUE, allow_nan=False),
    st.sampled_from([NAN, prompb.stale_nan(), float("inf"), -float("inf"), 1.7e308, -1e16]),
)


@st.composite
def rw_series(draw: st.DrawFn) -> dict[str, Any]:
    labels = {"__name__": draw(st.sampled_from(RW_NAMES))}
    if draw(st.integers(0, 59)) == 0:
        del labels["__name__"]
    for key, pool in (("instance", RW_INSTANCES), ("job", RW_JOBS), ("dev", RW_DEVS)):
        v = draw(st.sampled_from(pool))
        if v is not None:
            labels[key] = v
    points = draw(
        st.lists(st.tuples(RW_VALUES, st.integers(-600_000, 0), st.integers(0, 199)), max_size=4)
    )
    return {"labels": labels, "points": points}


def rw_expected(
    series: list[dict[str, Any]], now: int, stored_kinds: dict[str, str]
) -> tuple[int, dict[str, int], list[dict[str, Any]]]:
    """Status, skipped counts and stored items of a remote-write request, by the README."""
    skipped = dict.fromkeys(remote_write.SKIP_REASONS, 0)
    items: list[dict[str, Any]] = []
    for s in series:
        labels = dict(s["labels"])
        name = labels.pop("__name__", "")
        if not name:
            return 400, {}, []
        entity = labels.pop("instance", "")
        job = {"job": labels.pop("job")} if "job" in labels else {}
        metric = remote_write.metric_name(name, labels)
        n = len(s["points"])
        bad_text = any(
            any(ord(c) < 32 or 127 <= ord(c) < 160 for c in text) for text in (entity, metric)
        ) or any(len(v) > 1024 or any(ord(c) < 32 for c in v) for v in job.values())
        if not entity:
            skipped["no_entity_label"] += n
        elif len(metric) > 128:
            skipped["metric_too_long"] += n
        elif len(entity) > 255 or bad_text:
            skipped["invalid_label"] += n
        else:
            for v, offset_ms, future in s["points"]:
                ts_ms = (now - 5) * 1000 + offset_ms + (3_600_000 if future == 0 else 0)
                if math.isnan(v):
                    skipped["stale" if prompb.is_stale_marker(v) else "non_finite"] += 1
                elif math.isinf(v):
                    skipped["non_finite"] += 1
                elif abs(v) > MAX_ABS_VALUE:
                    skipped["out_of_range"] += 1
                else:
                    items.append(
                        {
                            "entity": entity,
                            "kind": "vm",
                            "metric": metric,
                            "t": ts_ms // 1000,
                            "value": v,
                            "labels": job or None,
                            "unit": remote_write.unit_of(name),
                            "future": future == 0,
                        }
                    )
    if any(i["future"] for i in items):
        return 400, {}, []
    kept = []
    for i in items:
        if stored_kinds.get(i["entity"], "vm") != "vm":
            skipped["kind_conflict"] += 1
        else:
            kept.append(i)
    return 200, skipped, kept


@pytest.fixture
def seeded_server(http: httpx.Client) -> httpx.Client:
    """The live daemon with entity ``srv`` registered as a server (a remote-write conflict)."""
    t = int(time.time()) - 5
    r = http.post(
        "/v1/metrics",
        headers=bearer("ingest"),
        json={"samples": [{"entity": "srv", "kind": "server", "metric": "m", "ts": t, "value": 1}]},
    )
    assert r.status_code == 200, r.text

    return http


@PROPERTY_SETTINGS
@given(series=st.lists(rw_series(), max_size=5))
def test_remote_write_stores_what_it_can_and_counts_the_rest(
    seeded_server: httpx.Client,
    store: Any,  # noqa: ANN401
    series: list[dict[str, Any]],
) -> None:
    http = seeded_server
    now = int(time.time())
    req = prompb.WriteRequest()
    for s in series:
        ts = req.timeseries.add()
        for k in sorted(s["labels"]):
            ts.labels.add(name=k, value=s["labels"][k])
        for v, offset_ms, future in s["points"]:
            t_ms = (now - 5) * 1000 + offset_ms + (3_600_000 if future == 0 else 0)
            ts.samples.add(value=v, timestamp=t_ms)
    body = bytes(cramjam.snappy.compress_raw(req.SerializeToString()))
    before = snapshot(store)
    status, skipped, items = rw_expected(
        series, now, {n: k for n, (k, _) in before["entities"].items()}
    )
    r = http.post(
        "/api/v1/write",
        content=body,
        headers={
            **bearer("ingest"),
            "content-type": "application/x-protobuf",
            "content-encoding": "snappy",
        },
    )
    event(f"remote-write: {r.status_code}")
    assert r.status_code == status, (r.text, series)
    if status == 200:
        assert r.json() == {"stored": len(items), "skipped": skipped}, series
        for reason, n in skipped.items():
            if n:
                event(f"remote-write skipped: {reason}")
        after = apply(before, items)
    else:
        assert set(r.json()) == {"error", "detail", "problems"}
        after = before
    assert snapshot(store) == after
    check_reads(http, after, {(i["entity"], i["metric"]) for i in items})
