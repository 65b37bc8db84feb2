"""The msgspec fast path of ingest (``fast_batch``) against the full path (``validate``).

The fast path may only change speed: whenever it returns a batch, parsing with orjson and
validating sample by sample must return the same batch (same columns in the same order, the
same float bits, the same kinds, first items, labels and units); on anything else it steps
aside and the full path answers. Bodies here are written as JSON text, so number spellings
orjson and msgspec might read differently (exponents, ``-0``, 20-digit integers, ``1e400``,
subnormals) reach both parsers as the same bytes.
"""

from __future__ import annotations

import struct

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from service.ingest import BatchError, fast_batch, parse_body, read_batch, validate

NOW = 1_700_000_000
OLDEST = NOW - 86_400


class Raw(str):
    """A JSON literal written as is (a number spelling)."""


def dump(v) -> str:  # noqa: ANN001
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, dict):
        return "{" + ",".join(f"{dump(k)}:{dump(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(dump(x) for x in v) + "]"
    return orjson.dumps(v).decode()


# Each field: what a sender may write (many spellings), or, less often, something refused.
good_numbers = st.one_of(
    st.floats(-1e6, 1e6),
    st.integers(-(10**15), 10**15),
    st.sampled_from(
        ["1e3", "1E+2", "-0", "-0.0", "0.1e-5", "5e-324", "17e14", "-1e15", "1e15",
         "999999999999999.9", "2.5", "7", "0.30000000000000004"]
    ).map(Raw),
    st.floats(-1e15, 1e15).map(lambda x: Raw(repr(x))),
    st.floats(-1e15, 1e15).map(lambda x: Raw(f"{x:.6e}")),
)
bad_numbers = st.one_of(
    st.sampled_from(
        ["123456789012345678901234", "1e400", "1.7976931348623157e308", "1e16"]
    ).map(Raw),
    st.sampled_from(["1.0", True, None, [1]]),
)
good_ts = st.one_of(
    st.integers(OLDEST, NOW + 300),
    st.floats(OLDEST, NOW + 300.0).map(lambda x: Raw(repr(x))),
    st.sampled_from(["2023-11-14T22:13:10Z", "2023-11-14T22:13:10.9+00:00", Raw("16999999e2")]),
)
bad_ts = st.sampled_from(
    [OLDEST - 1, NOW + 301, "2023-11-14T22:13:10", "yesterday", Raw("1e400"), Raw("17e8"),
     True, None, Raw("123456789012345678901234")]
)
good_labels = st.one_of(
    st.just({"zone": "a"}),
    st.just({"zone": "a", "n": 3, "on": True, "w": 0.5}),
    st.dictionaries(st.sampled_from(["zone", "rack", "é"]),
                    st.one_of(st.text(max_size=3).filter(lambda t: t.isprintable()),
                              st.integers(-(2**53), 2**53), st.booleans()), max_size=3),
)
bad_labels = st.one_of(
    st.just({"zone": {"x": 1}}), st.just({"": "a"}), st.just({"r\x00": "a"}),
    st.just({"n": 2**54}), st.just({"n": None}), st.sampled_from(["zone=a", [1], 3]),
)
KIND_OF = {"fn": "function", "é": "server"}
FIELDS = {
    "entity": (st.sampled_from(["vm-1", "vm-2", "fn", "é", "a" * 255]),
               st.sampled_from(["", "a" * 256, "x\x00y", "\x85", 7, None])),
    "kind": (st.just("by entity"), st.sampled_from(["bogus", 3, None, "VM", "server"])),
    "metric": (st.sampled_from(["cpu_util", "mem_util", "m" * 128]),
               st.sampled_from(["m" * 129, "", "c\n", 1])),
    "ts": (good_ts, bad_ts),
    "value": (good_numbers, bad_numbers),
    "labels": (st.one_of(st.none(), good_labels), bad_labels),
    "unit": (st.sampled_from([None, "%", "", "u" * 64]), st.sampled_from(["u" * 65, "b\x01", 5])),
}


@st.composite
def samples(draw):
    wrong = draw(st.sampled_from([None] * 40 + sorted(FIELDS) + ["missing", "extra"]))
    s = {}
    for name, (good, bad) in FIELDS.items():
        if name in ("labels", "unit") and wrong != name and draw(st.integers(0, 2)):
            continue  # optional: mostly absent
        s[name] = draw(bad if wrong == name else good)
    if s["kind"] == "by entity":  # one kind per entity, unless the kind is the wrong field
        s["kind"] = KIND_OF.get(s["entity"], "vm")
    if wrong == "missing":
        del s[draw(st.sampled_from(["entity", "kind", "metric", "ts", "value"]))]
    elif wrong == "extra":
        s["extra"] = 1
    return s


def bits(xs: list[float]) -> list[bytes]:
    return [struct.pack("<d", x) for x in xs]


def same(a, b) -> None:  # noqa: ANN001
    assert a.keys == b.keys
    assert a.ts == b.ts and [type(t) for t in a.ts] == [type(t) for t in b.ts]
    assert bits(a.values) == bits(b.values)
    for field in ("kinds", "first_item", "labels", "units"):
        assert list(getattr(a, field).items()) == list(getattr(b, field).items()), field
    assert a.lines == b.lines is None


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(samples(), max_size=6),
    wrap=st.sampled_from(["plain", "plain", "plain", "extra-key", "not-a-list", "bare-list"]),
)
def test_the_fast_path_accepts_only_what_validate_accepts_and_builds_the_same_batch(items, wrap):
    doc = {"samples": items}
    if wrap == "extra-key":
        doc["source"] = "test"
    elif wrap == "not-a-list":
        doc = {"samples": {"0": items}}
    elif wrap == "bare-list":
        doc = items
    body = dump(doc).encode()
    fast = fast_batch(body, NOW, 300, OLDEST)
    try:
        parsed, lines = parse_body(body, "json")
        full = validate(parsed, NOW, 300, lines, OLDEST)
    except BatchError:
        full = None
    event(f"fast {fast is not None}, full {full is not None}")
    if fast is not None:
        assert full is not None, body
        same(fast, full)


def test_well_formed_bodies_take_the_fast_path():
    items = [{"entity": f"vm-{i % 3}", "kind": "vm", "metric": "cpu_util", "ts": NOW - i,
              "value": i / 3, **({"labels": {"zone": "a"}, "unit": "%"} if i % 2 else {})}
             for i in range(50)]
    items.append({"entity": "fn", "kind": "function", "metric": "invocations",
                  "ts": "2023-11-14T22:13:10Z", "value": 4})
    body = orjson.dumps({"samples": items})
    fast = fast_batch(body, NOW, 300, OLDEST)
    assert fast is not None
    same(fast, validate(orjson.loads(body)["samples"], NOW, 300, None, OLDEST))
    assert fast.labels == {"vm-1": {"zone": "a"}, "vm-0": {"zone": "a"}, "vm-2": {"zone": "a"}}
    assert fast.ts[-1] == 1_699_999_990 and fast.values[-1] == 4.0


@pytest.mark.parametrize(
    ("sample", "where"),
    [
        ({"value": float("nan")}, "samples[1].value"),  # written as NaN: only the lenient parser
        ({"kind": "function"}, "samples[1].kind"),  # vm-1 was a vm one sample earlier
        ({"ts": NOW + 301}, "samples[1].ts"),
        ({"entity": "vm\x00"}, "samples[1].entity"),
        ({"labels": {"zone": {"nested": 1}}}, "samples[1].labels.zone"),
    ],
)
def test_a_bad_sample_is_named_by_the_full_path(sample, where):
    good = {"entity": "vm-1", "kind": "vm", "metric": "cpu_util", "ts": NOW - 1, "value": 1.0}
    body = orjson.dumps({"samples": [good, {**good, **sample}]},
                        option=orjson.OPT_SERIALIZE_NUMPY)
    if "nan" in repr(sample):
        body = body.replace(b"null", b"NaN")
    assert fast_batch(body, NOW, 300, OLDEST) is None
    with pytest.raises(BatchError) as info:
        read_batch(body, "json", NOW, 300, OLDEST)
    assert info.value.problems[0].where == where


GOOD = b'{"entity":"vm-1","kind":"vm","metric":"cpu_util","ts":1699999999,"value":1.0}'


@pytest.mark.parametrize(
    ("body", "error"),
    [
        # nesting deeper than msgspec's stack allows, in an ignored key (orjson reads it: the
        # batch is stored) and in the labels (refused, by name)
        (b'{"samples":[' + GOOD + b'],"x":' + b"[" * 1000 + b"]" * 1000 + b"}", None),
        (b'{"samples":[' + GOOD[:-1] + b',"labels":{"a":' + b"[" * 1000 + b"]" * 1000
         + b"}}]}", "labels.a"),
        # what msgspec skips in an unknown top-level field without reading all of it
        (b'{"samples":[' + GOOD + b'],"x":"\xff"}', "malformed"),
        (b'{"samples":[' + GOOD + b'],"x":' + b"9" * 4301 + b"}", "malformed"),
    ],
)
def test_bodies_the_fast_path_cannot_judge_get_the_full_paths_answer(body, error):
    assert fast_batch(body, NOW, 300, OLDEST) is None
    if error is None:
        assert read_batch(body, "json", NOW, 300, OLDEST).keys == [("vm-1", "cpu_util")]
        return
    with pytest.raises(BatchError) as info:
        read_batch(body, "json", NOW, 300, OLDEST)
    where = info.value.problems[0].where
    assert (where == "body" and "malformed" in str(info.value)) if error == "malformed" else (
        where == "samples[0]." + error)
