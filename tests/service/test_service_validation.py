"""Parsing and validation of ingest bodies (pure functions, no database)."""

from __future__ import annotations

import orjson
import pytest

from service.ingest import (
    MIN_TS,
    BatchError,
    MalformedBodyError,
    UnsupportedMediaTypeError,
    media_type,
    parse_and_validate,
    parse_ts,
    validate,
)

NOW = 1_700_000_000


def good(**kw):
    s = {"entity": "vm-1", "kind": "vm", "metric": "cpu_util", "ts": NOW - 10, "value": 1.5}
    s.update(kw)
    return s


def js(*samples) -> bytes:
    return orjson.dumps({"samples": list(samples)})


def nd(*samples) -> bytes:
    return b"\n".join(orjson.dumps(s) for s in samples) + b"\n"


def run(body: bytes, ctype: str = "application/json", **kw):
    return parse_and_validate(body, ctype, NOW, 300, **kw)


def rejected(body: bytes, ctype: str = "application/json", **kw) -> list[dict]:
    with pytest.raises(BatchError) as info:
        run(body, ctype, **kw)
    return [p.as_dict() for p in info.value.problems]


def test_good_batch_becomes_columns_in_request_order():
    b = run(
        js(
            good(value=1),
            good(
                entity="fn",
                kind="function",
                metric="requests",
                ts=NOW - 5.9,
                value=2.25,
                labels={"app": "x"},
                unit="req/s",
            ),
        )
    )
    assert b.keys == [("vm-1", "cpu_util"), ("fn", "requests")]
    assert b.ts == [NOW - 10, NOW - 6]  # fractions of a second are floored
    assert b.values == [1.0, 2.25] and all(type(v) is float for v in b.values)
    assert b.kinds == {"vm-1": "vm", "fn": "function"}
    assert b.labels == {"fn": {"app": "x"}}
    assert b.units == {("fn", "requests"): "req/s"}


def test_ndjson_is_parsed_and_blank_lines_are_skipped():
    body = nd(good(ts=NOW - 3)) + b"\n  \n" + nd(good(ts=NOW - 2))
    b = run(body, "application/x-ndjson")
    assert b.ts == [NOW - 3, NOW - 2]
    assert b.lines == [1, 4]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2023-11-14T22:13:20Z", NOW),
        ("2023-11-14T23:13:20+01:00", NOW),
        ("2023-11-14T22:13:20.999Z", NOW),
        (NOW + 0.75, NOW),
        (NOW, NOW),
    ],
)
def test_ts_accepts_unix_seconds_and_rfc3339(raw, expected):
    assert parse_ts(raw) == expected


@pytest.mark.parametrize(
    ("sample", "field", "phrase"),
    [
        (good(value=None), "value", "must be a number"),
        (good(value="1.0"), "value", "must be a number"),
        (good(value=True), "value", "must be a number"),
        (good(kind="container"), "kind", "unknown kind 'container'"),
        (good(ts=MIN_TS - 1), "ts", "before 2000-01-01"),
        (good(ts=NOW + 301), "ts", "301 s in the future"),
        (good(ts="2023-11-14T22:13:20"), "ts", "no UTC offset"),
        (good(ts="yesterday"), "ts", "not an RFC 3339 timestamp"),
        (good(entity=""), "entity", "non-empty string"),
        (good(entity="x" * 256), "entity", "longer than 255"),
        (good(metric=7), "metric", "non-empty string"),
        (good(labels=["a"]), "labels", "JSON object"),
        (good(colour="red"), "colour", "unknown field"),
    ],
)
def test_bad_field_is_named_with_its_item(sample, field, phrase):
    probs = rejected(js(good(), sample))
    assert len(probs) == 1
    assert probs[0]["item"] == 1 and probs[0]["field"] == field
    assert probs[0]["where"] == f"samples[1].{field}"
    assert phrase in probs[0]["message"]


@pytest.mark.parametrize("field", ["entity", "kind", "metric", "ts", "value"])
def test_missing_field_is_named(field):
    s = good()
    del s[field]
    probs = rejected(js(s))
    assert probs == [
        {
            "where": f"samples[0].{field}",
            "item": 0,
            "field": field,
            "message": "missing required field",
        }
    ]


def test_non_finite_json_literals_are_named_by_item_not_as_malformed_json():
    body = (
        b'{"samples": [' + orjson.dumps(good()) + b', {"entity": "vm-1", "kind": "vm", '
        b'"metric": "cpu_util", "ts": 1699999990, "value": NaN}, {"entity": "vm-1", '
        b'"kind": "vm", "metric": "m", "ts": 1699999990, "value": 1e999}]}'
    )
    probs = rejected(body)
    assert [(p["item"], p["field"]) for p in probs] == [(1, "value"), (2, "value")]
    assert all("finite" in p["message"] for p in probs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 10**400])
def test_non_finite_values_are_refused(bad):
    with pytest.raises(BatchError) as info:
        validate([good(), good(value=bad)], NOW, 300)
    p = info.value.problems[0]
    assert (p.item, p.field) == (1, "value") and "finite" in p.message


def test_non_finite_ts_is_refused():
    with pytest.raises(BatchError) as info:
        validate([good(ts=float("nan"))], NOW, 300)
    assert info.value.problems[0].field == "ts"


def test_ts_older_than_retention_is_refused_with_advice():
    probs = rejected(js(good(ts=NOW - 7200)), oldest=NOW - 3600)
    assert probs[0]["field"] == "ts" and "--shift-to-now" in probs[0]["message"]


def test_same_entity_with_two_kinds_in_one_batch():
    probs = rejected(js(good(), good(kind="server")))
    assert probs[0]["item"] == 1 and probs[0]["field"] == "kind"


def test_ndjson_errors_name_the_line():
    body = nd(good(), good()) + b"\n" + nd(good(value=float("inf")))
    probs = rejected(body, "application/x-ndjson")
    assert probs[0]["line"] == 4 and probs[0]["field"] == "value"
    assert probs[0]["where"] == "line 4, field value"


def test_malformed_ndjson_line_is_named():
    body = nd(good()) + b'{"entity": "vm-1",\n' + nd(good())
    with pytest.raises(MalformedBodyError) as info:
        run(body, "application/x-ndjson")
    assert [p.line for p in info.value.problems] == [2]
    assert info.value.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        # two values on line 1 and one value over lines 2-3: joined, this would parse
        b'{"entity": "a"}, {"entity": "b"}\n[1\n2]\n',
        b'{"entity": "a"} {"entity": "b"}\n',
    ],
)
def test_ndjson_lines_are_not_joined_into_one_document(body):
    with pytest.raises(MalformedBodyError) as info:
        run(body, "application/x-ndjson")
    assert info.value.problems[0].line == 1


def test_malformed_json_names_line_and_column():
    with pytest.raises(MalformedBodyError) as info:
        run(b'{"samples": [\n  {"entity": }]}')
    assert "line 2, column 14" in str(info.value)


@pytest.mark.parametrize(
    ("body", "phrase"),
    [(b"[1, 2]", '{"samples": [...]}'), (b'{"samples": 3}', "list of sample objects")],
)
def test_wrong_document_shape(body, phrase):
    with pytest.raises(BatchError) as info:
        run(body)
    assert phrase in str(info.value)


def test_sample_that_is_not_an_object():
    probs = rejected(js(good(), 5))
    assert probs[0]["item"] == 1 and "sample object" in probs[0]["message"]


def test_problems_are_collected_across_items_up_to_a_cap():
    probs = rejected(js(*[good(value="x")] * 50))
    assert len(probs) == 20
    assert [p["item"] for p in probs[:3]] == [0, 1, 2]


@pytest.mark.parametrize(
    ("ctype", "kind"),
    [
        ("application/json", "json"),
        ("application/json; charset=utf-8", "json"),
        ("application/x-ndjson", "ndjson"),
        ("Application/NDJSON", "ndjson"),
    ],
)
def test_media_types(ctype, kind):
    assert media_type(ctype) == kind


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_unsupported_media_type(ctype):
    with pytest.raises(UnsupportedMediaTypeError) as info:
        media_type(ctype)
    assert info.value.status_code == 415 and "application/x-ndjson" in str(info.value)


# The bounds the README documents ("What ingest stores"), written out as numbers here rather
# than read from the MAX_* constants, so a changed constant breaks the promise visibly: the
# last accepted value of each bound and the first refused one.
LABELS_16384_BYTES = {f"k{i:02d}": "v" * 1021 for i in range(16)}  # 16 x (3 + 1021) bytes
AT_THE_BOUNDS = [
    {"entity": "e" * 255},
    {"metric": "m" * 128},
    {"unit": "u" * 64},
    {"unit": ""},
    {"value": 1e15},
    {"value": -1e15},
    {"value": 10**15},
    {"labels": {"zone": "v" * 1024}},
    {"labels": {"k" * 128: "v"}},
    {"labels": {f"k{i}": "v" for i in range(64)}},
    {"labels": {"n": 2**53, "m": -(2**53), "f": 1.5, "z": 0, "b": False}},
    {"labels": LABELS_16384_BYTES},
]
PAST_THE_BOUNDS = [
    ({"entity": "e" * 256}, "entity", "longer than 255"),
    ({"metric": "m" * 129}, "metric", "longer than 128"),
    ({"unit": "u" * 65}, "unit", "longer than 64"),
    ({"value": 1.0000000000000002e15}, "value", "beyond"),
    ({"value": -(10**15) - 1}, "value", "beyond"),
    ({"labels": {"zone": "v" * 1025}}, "labels.zone", "longer than 1024"),
    ({"labels": {"k" * 129: "v"}}, "labels", "longer than 128"),
    ({"labels": {f"k{i}": "v" for i in range(65)}}, "labels", "at most 64"),
    ({"labels": {"n": 2**53 + 1}}, "labels.n", "2^53"),
    ({"labels": {"n": -(2**53) - 1}}, "labels.n", "2^53"),
    ({"labels": {**LABELS_16384_BYTES, "x": ""}}, "labels", "at most 16384"),
]


@pytest.mark.parametrize("fields", AT_THE_BOUNDS)
def test_values_at_the_documented_bounds_are_stored(fields):
    b = validate([good(**fields)], NOW, 300)
    assert b.keys == [(fields.get("entity", "vm-1"), fields.get("metric", "cpu_util"))]
    assert b.values == [float(fields.get("value", 1.5))]
    if "labels" in fields:
        assert b.labels == {"vm-1": fields["labels"]}
    if "unit" in fields:
        assert b.units == {("vm-1", "cpu_util"): fields["unit"]}


@pytest.mark.parametrize(("fields", "field", "phrase"), PAST_THE_BOUNDS)
def test_one_past_each_documented_bound_is_refused_by_name(fields, field, phrase):
    probs = rejected(js(good(), good(**fields)))
    assert [(p["item"], p["field"]) for p in probs] == [(1, field)], probs
    assert phrase in probs[0]["message"]


def test_label_problems_are_collected_across_items_up_to_the_cap():
    probs = rejected(js(*[good(entity=f"e{i}", labels={"a": None}) for i in range(30)]))
    assert [p["item"] for p in probs] == list(range(20))
    assert all(p["field"] == "labels.a" for p in probs)
