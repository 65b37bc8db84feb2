"""Parsing and validation of ingest request bodies (JSON or NDJSON), columnar and fast.

No pydantic model is built per sample. A JSON body is first decoded by msgspec straight into
typed sample structs and checked column by column (:func:`fast_batch`); a body that does not
pass untouched there (any problem at all, NDJSON, a lenient ``NaN``) is parsed by orjson and
checked in one loop that fills the same columns and names every problem (:func:`validate`).
The fast path accepts only what the loop accepts and builds the same :class:`Batch` (a
property test holds them together), so it changes speed, never an answer. Every problem is
reported with the item index (JSON) or line number (NDJSON) and the field, up to
:data:`MAX_PROBLEMS` of them; a batch with any problem is rejected as a whole.

Sample object fields:
    entity (str, required)   entity name, 1-255 characters
    kind   (str, required)   ``vm``, ``function`` or ``server``
    metric (str, required)   metric name, 1-128 characters
    ts     (required)        unix seconds (number) or an RFC 3339 string with an offset;
                             fractions of a second are dropped (1-second resolution)
    value  (number, required) finite, at most :data:`MAX_ABS_VALUE` in magnitude
    labels (object, optional) labels of the entity (the batch's last one wins): a flat map of
                             label names to strings, numbers or booleans, bounded by
                             :data:`MAX_LABELS`, :data:`MAX_LABEL_NAME`,
                             :data:`MAX_LABEL_VALUE` and :data:`MAX_LABELS_BYTES`
    unit   (str, optional)   unit of the metric, kept when the series is created

Every text (entity, metric, unit, label names and string values) must be valid Unicode
without control characters: a lone surrogate cannot be stored or encoded as UTF-8, and a NUL
or a newline in a name breaks file names, logs and the Prometheus notation downstream.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from typing import Any

import msgspec
import orjson

from common.errors import InputError

#: Entity kinds the store accepts (fixed when an entity is first seen).
KINDS = ("vm", "function", "server")

#: 2000-01-01T00:00:00Z: samples older than this are certainly a unit or clock mistake.
MIN_TS = 946_684_800
#: How many problems one error answer lists at most.
MAX_PROBLEMS = 20
#: Largest magnitude of a sample value. Sums of a month of per-second samples at this bound
#: stay ~10^8 times below float64 overflow, and squares (variances) stay within float32 for
#: the neural models; 1.7e308 was accepted once and made every sum over it infinite.
MAX_ABS_VALUE = 1e15
#: Labels of one entity: most labels, longest name and string value (characters), and the
#: most UTF-8 bytes of all names and values together.
MAX_LABELS = 64
MAX_LABEL_NAME = 128
MAX_LABEL_VALUE = 1024
MAX_LABELS_BYTES = 16384
#: Largest magnitude of a numeric label value: integers up to 2^53 are exact in every JSON
#: reader, the dashboard's JavaScript included.
MAX_LABEL_NUMBER = 2**53
#: Longest unit (characters).
MAX_UNIT = 64
#: C0 and C1 control characters, DEL and lone (unpaired) surrogates.
_BAD_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_KIND_SET = frozenset(KINDS)
_REQUIRED = ("entity", "kind", "metric", "ts", "value")
_ALLOWED = frozenset(_REQUIRED + ("labels", "unit"))

JSON_TYPES = ("application/json",)
NDJSON_TYPES = ("application/x-ndjson", "application/ndjson", "application/jsonl")


@dataclasses.dataclass
class Problem:
    """One thing wrong with a request: where (item or line, field) and what."""

    message: str
    item: int | None = None
    line: int | None = None
    field: str | None = None

    @property
    def where(self) -> str:
        """Human-readable place, e.g. ``samples[3].value`` or ``line 4, field value``."""
        if self.line is not None:
            return f"line {self.line}" + (f", field {self.field}" if self.field else "")
        if self.item is not None:
            return f"samples[{self.item}]" + (f".{self.field}" if self.field else "")
        return self.field or "body"

    def as_dict(self) -> dict[str, Any]:
        """JSON form used in error answers."""
        out: dict[str, Any] = {"where": self.where, "message": self.message}
        if self.item is not None:
            out["item"] = self.item
        if self.line is not None:
            out["line"] = self.line
        if self.field is not None:
            out["field"] = self.field
        return out


class BatchError(InputError):
    """A request body was rejected; ``problems`` lists what and where (HTTP 400/422)."""

    status_code = 422

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        first = problems[0]
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        super().__init__(first.message + more, where=first.where)


class MalformedBodyError(BatchError):
    """The body is not valid JSON / NDJSON (HTTP 400)."""

    status_code = 400


class ConflictError(BatchError):
    """The batch contradicts the store, e.g. an entity's kind (HTTP 409)."""

    status_code = 409


class UnsupportedMediaTypeError(InputError):
    """The Content-Type is neither JSON nor NDJSON (HTTP 415)."""

    status_code = 415


class BodyTooLargeError(InputError):
    """The body exceeds ``max_body_bytes`` (HTTP 413)."""

    status_code = 413


@dataclasses.dataclass
class Batch:
    """A validated batch in columns (one entry per sample, in request order)."""

    keys: list[tuple[str, str]]  # (entity, metric) per sample
    ts: list[int]  # unix seconds per sample
    values: list[float]
    kinds: dict[str, str]  # entity -> kind
    first_item: dict[str, int]  # entity -> index of its first sample (for error messages)
    labels: dict[str, dict[str, Any]]  # entity -> labels (last given in the batch)
    units: dict[tuple[str, str], str]  # (entity, metric) -> unit, where given
    lines: list[int] | None = None  # NDJSON line number per sample

    def __len__(self) -> int:
        return len(self.ts)

    def problem(self, index: int, message: str, field: str | None = None) -> Problem:
        """Locate a :class:`Problem` at sample ``index`` in the request's own terms."""
        if self.lines is not None:
            return Problem(message, line=self.lines[index], field=field)
        return Problem(message, item=index, field=field)


def media_type(content_type: str | None) -> str:
    """Which parser a Content-Type selects: ``json`` or ``ndjson``.

    Raises:
        UnsupportedMediaTypeError: for anything else (including no Content-Type).

    """
    base = (content_type or "").split(";", 1)[0].strip().lower()
    if base in JSON_TYPES:
        return "json"
    if base in NDJSON_TYPES:
        return "ndjson"
    raise UnsupportedMediaTypeError(
        f"unsupported Content-Type {content_type or '(none)'!r}; send application/json "
        '({"samples": [...]}) or application/x-ndjson (one sample object per line)',
        where="Content-Type",
    )


def _loads_lenient(data: bytes) -> Any:
    """orjson, then the stdlib parser, which also reads NaN/Infinity (rejected later by field)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as fast_exc:
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            # JSONDecodeError and UnicodeDecodeError are ValueErrors, and so is an integer of
            # more than 4300 digits (sys.get_int_max_str_digits): all malformed input.
            raise fast_exc from None


def parse_body(body: bytes, kind: str) -> tuple[list[Any], list[int] | None]:
    """Parse a body into sample objects (and, for NDJSON, their line numbers).

    Raises:
        MalformedBodyError: naming the line/column (JSON) or line (NDJSON).

    """
    if kind == "json":
        try:
            doc = _loads_lenient(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedBodyError(
                [Problem(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}")]
            ) from None
        if not isinstance(doc, dict) or "samples" not in doc:
            raise MalformedBodyError(
                [Problem('expected a JSON object {"samples": [...]}', field="samples")]
            )
        samples = doc["samples"]
        if not isinstance(samples, list):
            raise BatchError([Problem("must be a list of sample objects", field="samples")])
        return samples, None
    return _parse_ndjson(body)


def _parse_ndjson(body: bytes) -> tuple[list[Any], list[int]]:
    raw = body.split(b"\n")
    lines = [i + 1 for i, chunk in enumerate(raw) if chunk.strip()]
    # One parse per line (not one over the lines joined into an array): a line holding two
    # values, or a value split over two lines, must be an error on that line.
    loads = orjson.loads
    try:
        return [loads(raw[n - 1]) for n in lines], lines
    except orjson.JSONDecodeError:
        pass
    items: list[Any] = []
    problems: list[Problem] = []
    for n in lines:
        try:
            items.append(_loads_lenient(raw[n - 1]))
        except orjson.JSONDecodeError as exc:
            problems.append(Problem(f"malformed JSON at column {exc.colno}: {exc.msg}", line=n))
            if len(problems) >= MAX_PROBLEMS:
                break
    if problems:
        raise MalformedBodyError(problems)
    return items, lines


def parse_ts(raw: Any) -> int:
    """Unix seconds (int, floored) from a number or an RFC 3339 string.

    Raises:
        ValueError: with a message fit for an error answer.

    """
    t = type(raw)
    if t is int or t is float:
        if raw - raw != 0:  # NaN or +-inf
            raise ValueError(f"must be finite, got {raw!r}")
        return int(raw // 1)
    if t is str:
        try:
            stamp = dt.datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(
                f"{raw!r} is not an RFC 3339 timestamp (e.g. 2024-05-01T12:00:00Z)"
            ) from None
        if stamp.tzinfo is None:
            raise ValueError(f"{raw!r} has no UTC offset; append Z or +HH:MM")
        return int(stamp.timestamp() // 1)
    raise ValueError(f"must be unix seconds or an RFC 3339 string, got {type(raw).__name__}")


def _json_type(v: Any) -> str:  # noqa: ANN401
    """Name the JSON type of a parsed value, for messages."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    if isinstance(v, int | float):
        return "number"
    return "string" if isinstance(v, str) else type(v).__name__


def brief(v: Any, limit: int = 60) -> str:  # noqa: ANN401
    """``repr`` of a client's value for an error message: short, and safe to encode.

    ``repr`` escapes control characters and lone surrogates (which would make the error
    answer itself unencodable); containers are named by type, never echoed whole.
    """
    if isinstance(v, dict | list):
        return f"a JSON {_json_type(v)} of {len(v)} entries"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10**limit:
        return f"an integer of more than {limit} digits"
    text = repr(v)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def text_problem(text: str) -> str | None:
    r"""Why ``text`` cannot be stored as a name or label, or None when it can.

    Refused: C0/C1 control characters (NUL, newline, tab, ESC…), DEL and lone surrogates
    (``\udfff`` escapes in JSON: not valid Unicode, so not encodable as UTF-8 in the store).
    """
    m = _BAD_TEXT.search(text)
    if m is None:
        return None
    ch = m.group()
    if "\ud800" <= ch <= "\udfff":
        return f"holds a lone surrogate {ch!r} at character {m.start()} (not valid Unicode)"
    return f"holds the control character {ch!r} at character {m.start()}"


def label_problems(labels: Any) -> list[tuple[str, str]]:  # noqa: ANN401
    """Every (field, message) wrong with the labels of an entity; empty when they can be stored.

    Labels are a flat JSON object: names are non-empty strings of at most
    :data:`MAX_LABEL_NAME` characters; values are strings of at most
    :data:`MAX_LABEL_VALUE` characters, booleans, or finite numbers within
    ±:data:`MAX_LABEL_NUMBER`; at most :data:`MAX_LABELS` labels and
    :data:`MAX_LABELS_BYTES` bytes of UTF-8 in all. No text may hold a control character or
    a lone surrogate (:func:`text_problem`). The field of a problem is ``labels.NAME`` when
    the name itself is fine, else ``labels``.
    """
    if type(labels) is not dict:
        return [
            ("labels", f"must be a JSON object of label names to values, got {_json_type(labels)}")
        ]
    if len(labels) > MAX_LABELS:
        return [("labels", f"{len(labels)} labels, at most {MAX_LABELS} allowed")]
    out: list[tuple[str, str]] = []
    size = 0
    for k, v in labels.items():
        if type(k) is not str or not k:
            out.append(("labels", f"label name {brief(k)} must be a non-empty string"))
            continue
        bad = text_problem(k)
        if bad is not None:
            out.append(("labels", f"label name {brief(k)} {bad}"))
            continue
        if len(k) > MAX_LABEL_NAME:
            out.append(
                (
                    "labels",
                    f"label name {brief(k)} is longer than {MAX_LABEL_NAME} characters ({len(k)})",
                )
            )
            continue
        field = f"labels.{k}"
        size += len(k.encode())
        t = type(v)
        if t is str:
            bad = text_problem(v)
            if bad is not None:
                out.append((field, f"value {brief(v)} {bad}"))
            elif len(v) > MAX_LABEL_VALUE:
                out.append((field, f"value is longer than {MAX_LABEL_VALUE} characters ({len(v)})"))
            else:
                size += len(v.encode())
        elif t is bool:
            size += 5
        elif t is int or t is float:
            if v != v or v in (float("inf"), float("-inf")):
                out.append((field, f"must be a finite number, got {v!r}"))
            elif not -MAX_LABEL_NUMBER <= v <= MAX_LABEL_NUMBER:
                out.append(
                    (
                        field,
                        f"{brief(v)} is beyond ±2^53 ({MAX_LABEL_NUMBER}); send "
                        "large numbers as strings",
                    )
                )
            else:
                size += len(repr(v))
        else:
            out.append(
                (
                    field,
                    f"must be a string, number or boolean, got {_json_type(v)} "
                    "(labels are one flat object)",
                )
            )
    if not out and size > MAX_LABELS_BYTES:
        out.append(
            ("labels", f"names and values take {size} bytes of UTF-8, at most {MAX_LABELS_BYTES}")
        )
    return out


def _name_problem(v: Any, limit: int, empty_ok: bool = False) -> str | None:  # noqa: ANN401
    """Why ``v`` is not a valid entity, metric or unit name of at most ``limit`` characters."""
    if not isinstance(v, str) or not (v or empty_ok):
        return f"must be a {'' if empty_ok else 'non-empty '}string, got {brief(v)}"
    if len(v) > limit:
        return f"longer than {limit} characters ({len(v)})"
    bad = text_problem(v)
    return None if bad is None else f"{brief(v)} {bad}"


def _value_problem(v: Any) -> str | None:  # noqa: ANN401
    """Why ``v`` is not a storable sample value, or None."""
    if type(v) is bool or not isinstance(v, int | float):
        return f"must be a number, got {brief(v)}"
    try:
        f = float(v)
    except OverflowError:
        f = float("inf")
    if f - f != 0:
        return f"must be finite, got {brief(v)}"
    if not -MAX_ABS_VALUE <= f <= MAX_ABS_VALUE:
        return (
            f"{brief(v)} is beyond ±{MAX_ABS_VALUE:.0e}, the largest magnitude stored; "
            "send the value in a larger unit (e.g. GB instead of bytes)"
        )
    return None


def _diagnose(
    sample: Any, now: int, max_future_s: int, oldest: int
) -> list[tuple[str | None, str]]:
    """Every (field, message) wrong with one sample (slow path, only for rejected items)."""
    if not isinstance(sample, dict):
        return [(None, f"must be a sample object, got {type(sample).__name__}")]
    out: list[tuple[str | None, str]] = []
    for name in _REQUIRED:
        if name not in sample:
            out.append((name, "missing required field"))
    for name, limit in (("entity", 255), ("metric", 128)):
        if name in sample:
            bad = _name_problem(sample[name], limit)
            if bad is not None:
                out.append((name, bad))
    if "kind" in sample and (type(sample["kind"]) is not str or sample["kind"] not in _KIND_SET):
        out.append(("kind", f"unknown kind {brief(sample['kind'])}; use one of {', '.join(KINDS)}"))
    if "ts" in sample:
        try:
            t = parse_ts(sample["ts"])
        except ValueError as exc:
            out.append(("ts", str(exc)))
        else:
            if t < MIN_TS:
                out.append(("ts", f"{t} is before 2000-01-01 (unix seconds expected)"))
            elif t < oldest:
                out.append(
                    (
                        "ts",
                        f"{t} is {now - t} s old, older than the raw retention "
                        f"({now - oldest} s) and would be deleted at once; shift old traces "
                        "to now (tidewise feed --shift-to-now), send only the recent part "
                        "(--window SECONDS) or raise TIDEWISE_RAW_RETENTION_HOURS",
                    )
                )
            elif t > now + max_future_s:
                out.append(
                    ("ts", f"{t} is {t - now} s in the future (at most {max_future_s} s allowed)")
                )
    if "value" in sample:
        bad = _value_problem(sample["value"])
        if bad is not None:
            out.append(("value", bad))
    if sample.get("labels") is not None:
        out.extend(label_problems(sample["labels"]))
    if sample.get("unit") is not None:
        bad = _name_problem(sample["unit"], MAX_UNIT, empty_ok=True)
        if bad is not None:
            out.append(("unit", bad))
    for name in sorted(sample.keys() - _ALLOWED):
        out.append((name, f"unknown field; allowed: {', '.join(sorted(_ALLOWED))}"))
    return out


def validate(
    items: list[Any],
    now: int,
    max_future_s: int,
    lines: list[int] | None = None,
    oldest: int = MIN_TS,
) -> Batch:
    """Check every sample and return the batch as columns.

    Args:
        items: parsed sample objects.
        now: the server clock (unix s), for the "not in the future" check.
        max_future_s: allowed clock skew ahead of ``now`` (s).
        lines: NDJSON line number of each item, to name lines instead of indexes.
        oldest: the oldest ts accepted (unix s), e.g. now minus the raw retention; never
            earlier than 2000-01-01.

    Raises:
        BatchError: listing up to :data:`MAX_PROBLEMS` problems; nothing is kept.

    """
    batch = Batch([], [], [], {}, {}, {}, {}, lines)
    keys, tss, values = batch.keys, batch.ts, batch.values
    kinds, first_item = batch.kinds, batch.first_item
    hi = now + max_future_s
    lo = max(MIN_TS, oldest)
    vmax = MAX_ABS_VALUE
    bad_text = _BAD_TEXT.search
    clean: set[str] = set()  # entity and metric names checked for control characters
    problems: list[Problem] = []
    for i, s in enumerate(items):
        # Fast path: well-formed samples pass these checks with a handful of dict lookups.
        try:
            name = s["entity"]
            kind = s["kind"]
            metric = s["metric"]
            t = s["ts"]
            v = s["value"]
            tt = type(t)
            if tt is int or tt is float:
                t = int(t // 1)
            else:
                t = parse_ts(t)
            if type(v) is not float:
                if type(v) is not int:
                    raise TypeError
                v = float(v)
            ok = (
                type(name) is str
                and type(metric) is str
                and kind in _KIND_SET
                and lo <= t <= hi
                and -vmax <= v <= vmax  # also False for NaN
                and 0 < len(name) <= 255
                and 0 < len(metric) <= 128
            )
            if ok and (name not in clean or metric not in clean):
                # Once per distinct name: a batch repeats few names many times.
                ok = bad_text(name) is None and bad_text(metric) is None
                if ok:
                    clean.add(name)
                    clean.add(metric)
        except (KeyError, TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            for field, msg in _diagnose(s, now, max_future_s, lo) or [(None, "invalid sample")]:
                problems.append(batch.problem(i, msg, field))
            if len(problems) >= MAX_PROBLEMS:
                break
            continue
        known = kinds.get(name)
        if known is None:
            kinds[name] = kind
            first_item[name] = i
        elif known != kind:
            problems.append(
                batch.problem(
                    i, f"entity {name!r} was given kind {known!r} earlier in this batch", "kind"
                )
            )
            continue
        if len(s) > 5:
            extra = s.keys() - _ALLOWED
            if extra:
                problems.append(
                    batch.problem(
                        i,
                        f"unknown field; allowed: {', '.join(sorted(_ALLOWED))}",
                        sorted(extra)[0],
                    )
                )
                continue
            labels = s.get("labels")
            if labels is not None:
                # Equal to labels already checked (the common case: every sample of an
                # entity repeats them): valid too, since equal numbers share the bounds.
                if type(labels) is not dict or labels != batch.labels.get(name):
                    wrong = label_problems(labels)
                    if wrong:
                        problems.extend(batch.problem(i, m, f) for f, m in wrong)
                        if len(problems) >= MAX_PROBLEMS:
                            break
                        continue
                batch.labels[name] = labels
            unit = s.get("unit")
            if unit is not None:
                bad = _name_problem(unit, MAX_UNIT, empty_ok=True)
                if bad is not None:
                    problems.append(batch.problem(i, bad, "unit"))
                    continue
                batch.units[(name, metric)] = unit
        keys.append((name, metric))
        tss.append(t)
        values.append(v)
    if problems:
        raise BatchError(problems[:MAX_PROBLEMS])
    return batch


class _Sample(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """The typed shape of one sample, for :func:`fast_batch` (the checks follow it)."""

    entity: str
    kind: str
    metric: str
    ts: int | float | str
    value: float  # a JSON integer decodes to the same float as ``float(int)``
    labels: dict[str, Any] | None = None
    unit: str | None = None


class _Body(msgspec.Struct, forbid_unknown_fields=True):
    """``{"samples": [...]}`` and nothing else.

    :func:`parse_body` ignores other top-level keys, but only after parsing them, and msgspec
    skips an unknown field without checking all of it (invalid UTF-8, a 5,000-digit number):
    such a body takes the full path, which parses every byte.
    """

    samples: list[_Sample]


_FAST_DECODER = msgspec.json.Decoder(_Body)


def fast_batch(
    body: bytes, now: int, max_future_s: int, oldest: int = MIN_TS
) -> Batch | None:
    """Return the :class:`Batch` of a well-formed JSON body, or None to take the full path.

    Decodes with msgspec into typed structs and checks columns at once: it returns a batch
    only when :func:`validate` would return the same one, and None on anything it does not
    pass untouched (a type, a bound, a control character, a kind given twice, a malformed
    body), leaving it to :func:`parse_body` and :func:`validate` to accept it or to name
    every problem and where it is.
    """
    try:
        samples = _FAST_DECODER.decode(body).samples
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None  # RecursionError: nesting deeper than the stack; the full path names it
    ents = [s.entity for s in samples]
    metrics = [s.metric for s in samples]
    kinds_l = [s.kind for s in samples]
    raw_ts = [s.ts for s in samples]
    values = [s.value for s in samples]
    hi = now + max_future_s
    lo = max(MIN_TS, oldest)
    kind_set = set(kinds_l)
    if not kind_set <= _KIND_SET:
        return None
    bad_text = _BAD_TEXT.search
    for names, limit in ((set(ents), 255), (set(metrics), 128)):
        for name in names:
            if not 0 < len(name) <= limit or bad_text(name) is not None:
                return None
    if set(map(type, raw_ts)) <= {int}:
        ts = raw_ts  # whole seconds already (the usual case)
    else:
        try:
            ts = [
                int(t // 1) if (tt := type(t)) is int or tt is float else parse_ts(t)
                for t in raw_ts
            ]
        except (ValueError, OverflowError):
            return None
    if ts and not (lo <= min(ts) and max(ts) <= hi):
        return None
    if values and not (-MAX_ABS_VALUE <= min(values) and max(values) <= MAX_ABS_VALUE):
        return None
    total = sum(values)
    if total != total:  # a NaN, which min and max may step over (the bounds above rule out inf)
        return None
    order = dict.fromkeys(ents)  # entities in the order first seen, as validate adds them
    if len(kind_set) == 1:
        kinds = dict.fromkeys(order, kinds_l[0])
    else:
        last_kind = dict(zip(ents, kinds_l, strict=True))
        if len(set(zip(ents, kinds_l, strict=True))) != len(last_kind):
            return None  # an entity given two kinds: validate names the sample
        kinds = {e: last_kind[e] for e in order}
    first = dict(zip(reversed(ents), range(len(ents) - 1, -1, -1), strict=True))
    batch = Batch(
        list(zip(ents, metrics, strict=True)), ts, values,
        kinds, {e: first[e] for e in order}, {}, {},
    )
    for i, s in enumerate(samples):
        if s.labels is None and s.unit is None:
            continue
        name = ents[i]
        if s.labels is not None:
            if s.labels != batch.labels.get(name) and label_problems(s.labels):
                return None
            batch.labels[name] = s.labels
        if s.unit is not None:
            if _name_problem(s.unit, MAX_UNIT, empty_ok=True) is not None:
                return None
            batch.units[(name, metrics[i])] = s.unit
    return batch


def read_batch(
    body: bytes, media: str, now: int, max_future_s: int, oldest: int = MIN_TS
) -> Batch:
    """Parse and validate a body (``json`` or ``ndjson``): :func:`fast_batch` first.

    Raises:
        BatchError: as :func:`parse_body` and :func:`validate` do.

    """
    if media == "json":
        batch = fast_batch(body, now, max_future_s, oldest)
        if batch is not None:
            return batch
    items, lines = parse_body(body, media)
    return validate(items, now, max_future_s, lines, oldest)


def parse_and_validate(
    body: bytes, content_type: str | None, now: int, max_future_s: int, oldest: int = MIN_TS
) -> Batch:
    """Content-Type check, parse and validate in one call (the ingest route's service)."""
    return read_batch(body, media_type(content_type), now, max_future_s, oldest)
