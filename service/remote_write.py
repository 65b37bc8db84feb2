"""Prometheus remote-write 1.0 receiver: ``POST /api/v1/write``.

Prometheus (or any remote-write 1.0 sender: Grafana Agent/Alloy, vmagent, OpenTelemetry
Collector) posts a snappy *block*-compressed protobuf ``prometheus.WriteRequest``
(:mod:`service.prompb`) with ``Content-Encoding: snappy`` and ``Content-Type:
application/x-protobuf``. Each sample goes through the same validation and the same one-
transaction, last-write-wins insert as ``POST /v1/metrics`` (:func:`service.ingest.validate`,
:func:`service.store.samples.ingest`).

Mapping of a Prometheus series to a Tidewise series (settings ``TIDEWISE_REMOTE_WRITE_*`` of
:class:`service.config.Settings`):

* **entity** = the value of the ``instance`` label (``TIDEWISE_REMOTE_WRITE_ENTITY_LABEL``),
  kind ``vm`` (``TIDEWISE_REMOTE_WRITE_KIND``). Series without that label (e.g. aggregates
  over every instance) are skipped and counted as ``no_entity_label``.
* **entity labels** = the labels named in ``TIDEWISE_REMOTE_WRITE_ENTITY_LABELS`` (default
  ``job``): they describe the machine, not the series, and are stored on the entity.
* **metric** = ``__name__``, followed by the remaining labels in Prometheus notation, sorted
  by name, so series that differ only by label stay apart:
  ``node_cpu_seconds_total{cpu="0",mode="idle"}``; a series without other labels is just
  its name (``node_load1``, or ``cpu_util`` from a recording rule). Labels named in
  ``TIDEWISE_REMOTE_WRITE_DROP_LABELS`` (e.g. a HA ``replica`` label) are ignored.
  A name longer than 128 characters is skipped and counted as ``metric_too_long``.
* **unit** from the Prometheus naming convention when the series is new: ``_bytes`` →
  bytes, ``_seconds`` → seconds, ``_total`` → a counter (``count (counter)``) …
* **values are stored as sent**: a counter such as ``node_cpu_seconds_total`` stays a
  monotone counter; rates are derived at query/forecast time or, better, by a Prometheus
  recording rule that is remote-written like any series, e.g.
  ``cpu_util = 100 * (1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[30s])))``.
* **time**: Prometheus' millisecond timestamps are floored to the second (the store's
  resolution); several samples of one series in one second: the last one wins.

Samples that are skipped rather than rejected (counted in the answer's ``skipped`` and in
``tidewise_remote_write_skipped_samples_total{reason}`` on ``/metrics``): native histogram
samples (no single value to forecast; exemplars are ignored), staleness markers
(Prometheus' special NaN that ends a series — not a value), any other NaN or ±Inf (legal in
Prometheus, e.g. a summary quantile without observations, but not a number the store keeps),
values beyond ±:data:`service.ingest.MAX_ABS_VALUE` (``out_of_range``), samples older than
the raw retention (a sender replaying its WAL after an outage), series whose entity, metric
or entity labels the shared checks refuse (``invalid_label``: a control character, an
``instance`` over 255 characters, labels over the limits) and series of an instance already
registered with another kind (``kind_conflict``; the rest of the request is stored).
Rejecting these would make Prometheus drop the whole batch: it treats every 4xx as final
and retries only 5xx.

Errors: 400 malformed snappy/protobuf, a series without ``__name__``, or a sample the shared
validation rejects (e.g. a timestamp far in the future: check the clocks); 415 wrong
Content-Type/Content-Encoding (including remote-write 2.0 ``proto=io.prometheus.write.v2.Request``);
413 body (compressed or decompressed) over ``TIDEWISE_MAX_BODY_BYTES``; 401/403 without an
``ingest`` token; 503 store busy (Prometheus retries).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from service import ingest, intake
from service.auth import IngestAuth
from service.config import Settings
from service.deps import SettingsDep, StoreDep
from service.ingest import (
    MAX_ABS_VALUE,
    BatchError,
    BodyTooLargeError,
    ConflictError,
    MalformedBodyError,
    Problem,
    UnsupportedMediaTypeError,
    label_problems,
    text_problem,
)
from service.store import samples as sample_store
from service.store.db import Store

log = logging.getLogger("tidewise.remote_write")

#: The one protobuf message this receiver reads (remote-write 1.0).
PROTO_V1 = "prometheus.WriteRequest"
_METRIC_MAX = 128  # characters, as POST /v1/metrics
_ENTITY_MAX = 255  # characters, as POST /v1/metrics
#: Why samples are skipped rather than stored (the answer's ``skipped`` keys, in order).
SKIP_REASONS = (
    "stale",
    "non_finite",
    "out_of_range",
    "too_old",
    "no_entity_label",
    "metric_too_long",
    "invalid_label",
    "kind_conflict",
    "histogram",
)
_SNAPPY_STREAM_MAGIC = b"\xff\x06\x00\x00sNaPpY"
#: Unit from a Prometheus name suffix (first match wins; order matters: _seconds_total
#: before _total).
_UNIT_SUFFIXES = (
    ("_seconds_total", "seconds (counter)"),
    ("_bytes_total", "bytes (counter)"),
    ("_total", "count (counter)"),
    ("_seconds", "seconds"),
    ("_bytes", "bytes"),
    ("_ratio", "ratio"),
    ("_percent", "percent"),
    ("_celsius", "celsius"),
    ("_watts", "watts"),
    ("_joules", "joules"),
    ("_hertz", "hertz"),
)


class RemoteWriteResult(BaseModel):
    """Answer of POST /api/v1/write (Prometheus ignores the body; for people and tests)."""

    stored: int = Field(description="Samples written (samples).")
    skipped: dict[str, int] = Field(
        description="Samples not stored, by reason: stale, non_finite, out_of_range, "
        "too_old, no_entity_label, metric_too_long, invalid_label, kind_conflict, "
        "histogram (samples)."
    )


@dataclasses.dataclass
class Converted:
    """A WriteRequest turned into sample objects for :func:`service.ingest.validate`."""

    items: list[dict[str, Any]]
    origin: list[tuple[int, int]]  # (timeseries index, sample index) per item
    names: list[str]  # Tidewise metric name per timeseries (for error messages)
    skipped: dict[str, int]
    examples: dict[str, str] = dataclasses.field(default_factory=dict)  # reason -> a metric


def unit_of(name: str) -> str | None:
    """Return the unit a Prometheus metric name announces by its suffix, or None."""
    for suffix, unit in _UNIT_SUFFIXES:
        if name.endswith(suffix):
            return unit
    return None


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def metric_name(name: str, labels: dict[str, str]) -> str:
    """``name{a="x",b="y"}`` with labels sorted by name; just ``name`` without labels."""
    if not labels:
        return name
    inner = ",".join(f'{k}="{_escape(labels[k])}"' for k in sorted(labels))
    return f"{name}{{{inner}}}"


def check_headers(content_type: str | None, content_encoding: str | None) -> None:
    """Accept only remote-write 1.0: protobuf ``prometheus.WriteRequest``, snappy.

    Raises:
        UnsupportedMediaTypeError: anything else (HTTP 415), naming the header.

    """
    base, _, params = (content_type or "").partition(";")
    if base.strip().lower() != "application/x-protobuf":
        raise UnsupportedMediaTypeError(
            f"unsupported Content-Type {content_type or '(none)'!r}; Prometheus remote-write "
            "sends application/x-protobuf",
            where="Content-Type",
        )
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "proto" and value.strip().strip('"') != PROTO_V1:
            raise UnsupportedMediaTypeError(
                f"unsupported protobuf message {value.strip()!r}; this receiver speaks "
                f"remote-write 1.0 ({PROTO_V1}); set protobuf_message: "
                "prometheus.WriteRequest in the remote_write config",
                where="Content-Type",
            )
    encoding = (content_encoding or "").strip().lower()
    if encoding != "snappy":
        raise UnsupportedMediaTypeError(
            f"unsupported Content-Encoding {content_encoding or '(none)'!r}; remote-write bodies "
            "are snappy block-compressed (Content-Encoding: snappy)",
            where="Content-Encoding",
        )


def decompress(body: bytes, limit: int) -> bytes:
    """Snappy block-decompress ``body``, refusing (413) an output over ``limit`` bytes.

    Raises:
        MalformedBodyError: not snappy block format (HTTP 400).
        BodyTooLargeError: the declared decompressed size exceeds ``limit`` (HTTP 413).

    """
    import cramjam

    if body.startswith(_SNAPPY_STREAM_MAGIC):
        raise MalformedBodyError(
            [Problem("body is snappy *framed* (stream) format; remote-write uses the block format")]
        )
    # The block format starts with the decompressed length: checked before inflating, so a
    # small body cannot make the server allocate gigabytes. Read here rather than by cramjam,
    # which calls a length over 4 GiB malformed: it is a body too large (413), as documented.
    size = _declared_length(body)
    if size > limit:
        raise BodyTooLargeError(
            f"decompressed body of {size} bytes exceeds the limit of {limit} bytes "
            "(TIDEWISE_MAX_BODY_BYTES); lower queue_config.max_samples_per_send",
            where="body",
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:  # noqa: BLE001
        raise MalformedBodyError([Problem(f"malformed snappy body: {exc}")]) from None


def _declared_length(body: bytes) -> int:
    """Return the decompressed length a snappy block announces (its leading uvarint).

    Raises:
        MalformedBodyError: no complete varint in the first 10 bytes (HTTP 400).

    """
    size = shift = 0
    for byte in body[:10]:
        size |= (byte & 0x7F) << shift
        if byte < 0x80:
            return size
        shift += 7
    raise MalformedBodyError(
        [Problem("malformed snappy body: no decompressed-length header at its start")]
    )


def decode(data: bytes) -> Any:  # noqa: ANN401 - a prompb.WriteRequest
    """Parse a ``prometheus.WriteRequest``.

    Raises:
        MalformedBodyError: not a WriteRequest (HTTP 400).

    """
    from google.protobuf.message import DecodeError

    from service import prompb

    try:
        return prompb.WriteRequest.FromString(data)
    except DecodeError as exc:
        raise MalformedBodyError(
            [Problem(f"malformed protobuf: not a prometheus.WriteRequest ({exc})")]
        ) from None


def convert(req: Any, cfg: Settings, oldest: int) -> Converted:  # noqa: ANN401
    """Turn a WriteRequest into sample objects of ``POST /v1/metrics``.

    Args:
        req: the decoded ``prometheus.WriteRequest``.
        cfg: the settings holding the label mapping (``remote_write_*``).
        oldest: samples before this (unix s) are skipped as ``too_old``.

    Raises:
        MalformedBodyError: a series without ``__name__`` (HTTP 400).

    """
    from service import prompb

    skipped = dict.fromkeys(SKIP_REASONS, 0)
    items: list[dict[str, Any]] = []
    origin: list[tuple[int, int]] = []
    names: list[str] = []
    examples: dict[str, str] = {}
    ent_label, kind = cfg.remote_write_entity_label, cfg.remote_write_kind
    keep_on_entity, drop = cfg.remote_write_entity_label_set, cfg.remote_write_drop_label_set
    isfinite, is_stale = math.isfinite, prompb.is_stale_marker
    for j, series in enumerate(req.timeseries):
        # Native histograms have no single value to forecast: counted, not stored.
        skipped["histogram"] += len(series.histograms)
        labels = {lab.name: lab.value for lab in series.labels}
        name = labels.pop("__name__", "")
        if not name:
            raise MalformedBodyError(
                [Problem("series without a __name__ label", field=f"timeseries[{j}].labels")]
            )
        entity = labels.pop(ent_label, "")
        ent_labels = {k: labels.pop(k) for k in list(labels) if k in keep_on_entity}
        for k in drop:
            labels.pop(k, None)
        metric = metric_name(name, labels)
        names.append(metric)
        if not entity:
            skipped["no_entity_label"] += len(series.samples)
            examples.setdefault("no_entity_label", metric)
            continue
        if len(metric) > _METRIC_MAX:
            skipped["metric_too_long"] += len(series.samples)
            examples.setdefault("metric_too_long", metric)
            continue
        invalid = _invalid_label(entity, metric, ent_labels)
        if invalid is not None:
            # Prometheus label values may hold any Unicode, control characters included;
            # skipped rather than refused, or Prometheus would drop the whole batch for good.
            skipped["invalid_label"] += len(series.samples)
            examples.setdefault("invalid_label", invalid)
            continue
        unit = unit_of(name)
        for k, sample in enumerate(series.samples):
            v = sample.value
            if not isfinite(v):
                skipped["stale" if is_stale(v) else "non_finite"] += 1
                continue
            if not -MAX_ABS_VALUE <= v <= MAX_ABS_VALUE:
                skipped["out_of_range"] += 1
                examples.setdefault("out_of_range", f"{metric} = {v!r}")
                continue
            t = sample.timestamp // 1000  # ms -> s, floored (also for negative ms)
            if t < oldest:
                skipped["too_old"] += 1
                continue
            item: dict[str, Any] = {
                "entity": entity,
                "kind": kind,
                "metric": metric,
                "ts": t,
                "value": v,
            }
            if ent_labels:
                item["labels"] = ent_labels
            if unit:
                item["unit"] = unit
            items.append(item)
            origin.append((j, k))
    return Converted(items, origin, names, skipped, examples)


def _invalid_label(entity: str, metric: str, ent_labels: dict[str, str]) -> str | None:
    """Say what in a series cannot be stored (entity, metric or entity labels), or None."""
    if len(entity) > _ENTITY_MAX:
        return f"entity {entity[:40]!r}... longer than {_ENTITY_MAX} characters"
    for what, text in (("entity", entity), ("metric", metric)):
        bad = text_problem(text)
        if bad is not None:
            return f"{what} {text[:80]!r} {bad}"
    wrong = label_problems(ent_labels)
    if wrong:
        field, message = wrong[0]
        return f"{metric}: entity {field} {message}"
    return None


def store_write_request(
    store: Store, settings: Settings, body: bytes, now: int
) -> RemoteWriteResult:
    """Decompress, decode, map, validate and store one remote-write body (one transaction).

    Raises:
        InputError: subclasses carrying the HTTP status and what is wrong; nothing is stored.

    """
    req = decode(decompress(body, settings.max_body_bytes))
    oldest = max(ingest.MIN_TS, now - settings.raw_retention_s)
    conv = convert(req, settings, oldest)
    try:
        batch = ingest.validate(conv.items, now, settings.max_future_s, oldest=oldest)
    except BatchError as exc:
        raise _in_write_request_terms(exc, conv) from None
    while True:
        try:
            stored = sample_store.ingest(store, batch)
            break
        except ConflictError as exc:
            # An instance registered with another kind (e.g. a `server` fed by POST
            # /v1/metrics): its series are skipped, the rest stored. The failed transaction
            # wrote nothing; every conflict of the batch is named at once, so the retry on
            # the rest normally succeeds (it shrinks the batch each time, so it ends).
            _without_conflicts(exc, conv, batch)
            batch = ingest.validate(conv.items, now, settings.max_future_s, oldest=oldest)
    dropped = {k: v for k, v in conv.skipped.items() if v and k != "stale"}
    if dropped:
        _log_skipped(stored, dropped, conv.examples)
    return RemoteWriteResult(stored=stored, skipped=conv.skipped)


def _without_conflicts(exc: ConflictError, conv: Converted, batch: ingest.Batch) -> None:
    """Drop the items of the entities ``exc`` names from ``conv``, counting them skipped.

    Raises:
        BatchError: ``exc`` names no item of the batch (nothing to drop; the 409 stands).

    """
    names = {batch.keys[p.item][0] for p in exc.problems if p.item is not None}
    keep = [i for i, item in enumerate(conv.items) if item["entity"] not in names]
    if len(keep) == len(conv.items):  # nothing to drop: the retry could not end
        raise _in_write_request_terms(exc, conv) from None
    conv.skipped["kind_conflict"] += len(conv.items) - len(keep)
    conv.examples.setdefault("kind_conflict", exc.problems[0].message)
    conv.items = [conv.items[i] for i in keep]
    conv.origin = [conv.origin[i] for i in keep]


#: Reasons that point at the sender's configuration, warned about at most once per period.
_CONFIG_REASONS = (
    "no_entity_label",
    "metric_too_long",
    "invalid_label",
    "kind_conflict",
    "out_of_range",
    "too_old",
    "histogram",
)
_WARN_EVERY_S = 600.0
_last_warned: dict[str, float] = {}
_warn_lock = threading.Lock()


def _log_skipped(stored: int, dropped: dict[str, int], examples: dict[str, str]) -> None:
    """Log skipped samples: a warning per reason at most every 10 min, else debug.

    Prometheus sends the same series every scrape, so a permanent condition (a label name
    missing, a too long name) would otherwise log a warning per second.
    """
    now = time.monotonic()
    with _warn_lock:
        fresh = [
            r
            for r in _CONFIG_REASONS
            if r in dropped and now - _last_warned.get(r, -_WARN_EVERY_S) >= _WARN_EVERY_S
        ]
        for r in fresh:
            _last_warned[r] = now
    detail = ", ".join(
        f"{k}={v}" + (f" (e.g. {examples[k][:120]})" if k in examples else "")
        for k, v in dropped.items()
    )
    log.log(
        logging.WARNING if fresh else logging.DEBUG,
        "remote-write: stored %d samples, skipped %s; see docs/daemon-io.md "
        "(repeats of this warning are logged at debug level for %d s)",
        stored,
        detail,
        int(_WARN_EVERY_S),
    )


class RemoteWriteError(BatchError):
    """A sample of a WriteRequest failed the shared validation (HTTP 400)."""

    status_code = 400


def _in_write_request_terms(exc: BatchError, conv: Converted) -> BatchError:
    """Rename ``samples[i].field`` problems as ``timeseries[j].samples[k]`` (metric)."""
    problems = []
    for p in exc.problems:
        if p.item is None or p.item >= len(conv.origin):
            problems.append(p)
            continue
        j, k = conv.origin[p.item]
        field = "timestamp" if p.field == "ts" else p.field
        where = f"timeseries[{j}].samples[{k}]" + (f".{field}" if field else "")
        problems.append(Problem(f"{conv.names[j]}: {p.message}", field=where))
    out = type(exc)(problems) if type(exc) is not BatchError else RemoteWriteError(problems)
    return out


router = APIRouter(tags=["ingest"])


@router.post(
    "/api/v1/write",
    response_model=RemoteWriteResult,
    summary="Prometheus remote-write 1.0 (snappy protobuf WriteRequest); one transaction",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-protobuf": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "snappy block-compressed prometheus.WriteRequest",
                    }
                }
            },
        }
    },
)
async def remote_write(
    request: Request,
    _who: IngestAuth,
    store: StoreDep,
    settings: SettingsDep,
) -> RemoteWriteResult:
    """Store the samples of one remote-write request."""
    check_headers(request.headers.get("content-type"), request.headers.get("content-encoding"))
    body = await intake.read_body(request, settings.max_body_bytes)
    # Decoding and the commit run in a worker thread, as POST /v1/metrics.
    result = await run_in_threadpool(store_write_request, store, settings, body, int(time.time()))
    request.app.state.telemetry.remote_write_skipped(result.skipped)
    return result
