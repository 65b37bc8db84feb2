"""The latest forecast of each series (replaced by every refresh)."""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any

import numpy as np
import orjson
from sqlalchemy import JSON, Text, bindparam, cast, select
from sqlalchemy.orm import Session
from sqlalchemy.types import TypeDecorator

from service.store.db import Store, write_tx
from service.store.errors import NotFoundError
from service.store.samples import series_id
from service.store.sql import chunks, insert_for
from service.store.tables import Entity, ForecastRecord, Series


def _plain(value: Any) -> Any:  # noqa: ANN401
    """Convert what orjson cannot write itself, as the stdlib encoder would write it."""
    if isinstance(value, float):  # a float subclass
        return float(value)
    if isinstance(value, int):
        return int(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class _OrjsonJSON(TypeDecorator):
    """JSON written through orjson: a forecast's payload is some 180 floats per series.

    (The sample paths, 2,000 floats more, were in it until migration ``a4c2e9f7b1d3``.)
    The stdlib encoder spent about 2.6 ms per payload then, the largest part of storing a
    refresh (profiled with ``bench/daemon.py``); orjson writes the same JSON (shortest
    round-trip floats) several times faster. Reading is unchanged (the column's JSON type).
    """

    impl = JSON
    cache_ok = True

    def bind_processor(self, dialect: Any) -> Any:  # noqa: ANN401
        def dumps(value: Any) -> str:  # noqa: ANN401
            return orjson.dumps(value, default=_plain,
                                option=orjson.OPT_SERIALIZE_NUMPY).decode()

        if dialect.name == "postgresql":
            from psycopg.types.json import Json

            return lambda value: None if value is None else Json(value, dumps=dumps)
        return lambda value: None if value is None else dumps(value)


#: Header of a stored ``samples`` value: magic, dtype code, paths S, steps H (little-endian).
_HEADER = struct.Struct("<2sBxII")
_MAGIC = b"TW"
_DTYPES = {4: np.dtype("<f4"), 8: np.dtype("<f8")}


def encode_samples(paths: np.ndarray) -> bytes:
    """Encode sample paths ``(S, H)`` for the ``samples`` column, in binary.

    A 12-byte header (:data:`_HEADER`), then the values path by path, little-endian
    ``float32``: it keeps 24 bits of each value (a relative error under 6e-8, far inside the
    sampling error of 100 paths) in half the bytes of ``float64`` and about 0.4 of the JSON
    the paths took before: the refresh rewrites every series' row each period, and on
    PostgreSQL the server compresses and stores each one (``bench/forecast_payload.py``).
    Where any value is beyond ``float32``'s range, all are kept as ``float64``.

    Raises:
        ValueError: not a 2-D array, or a value that is not finite.

    """
    a = np.asarray(paths, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"sample paths must be (paths, steps), got shape {a.shape}")
    return encode_many(a[None])[0]


def encode_many(paths: np.ndarray) -> list[bytes]:
    """:func:`encode_samples` of each ``paths[k]`` of a ``(K, S, H)`` array, in one pass.

    For the forecast refresh, which stores thousands of forecasts of one shape each period:
    one conversion to ``float32`` and one finiteness check for all, instead of one each
    (:func:`encode_samples` is this for one; each value is ``float32`` unless one of its
    own paths' values is beyond that range).

    Raises:
        ValueError: not a 3-D array, or a value that is not finite.

    """
    a = np.asarray(paths, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"sample paths must be (forecasts, paths, steps), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("sample paths must be finite")
    with np.errstate(over="ignore"):
        small = a.astype(_DTYPES[4])
    fits = np.isfinite(small).all(axis=(1, 2))
    head4 = _HEADER.pack(_MAGIC, 4, *a.shape[1:])
    head8 = _HEADER.pack(_MAGIC, 8, *a.shape[1:])
    return [head4 + small[k].tobytes() if fits[k] else head8 + a[k].astype(_DTYPES[8]).tobytes()
            for k in range(len(a))]


def decode_samples(blob: bytes) -> np.ndarray:
    """Decode an :func:`encode_samples` value into its ``(S, H)`` float64 paths.

    Raises:
        ValueError: not such a value (names what is wrong).

    """
    blob = bytes(blob)
    if len(blob) < _HEADER.size:
        raise ValueError(f"stored samples of {len(blob)} bytes: shorter than their header")
    magic, size, n, h = _HEADER.unpack_from(blob)
    if magic != _MAGIC or size not in _DTYPES:
        raise ValueError(f"stored samples with an unknown header {blob[:4]!r}")
    if len(blob) != _HEADER.size + n * h * size:
        raise ValueError(f"stored samples of {len(blob)} bytes for {n} x {h} values of "
                         f"{size} bytes")
    return np.frombuffer(blob, dtype=_DTYPES[size], offset=_HEADER.size).reshape(
        n, h).astype(np.float64)


def samples_of(record: Any) -> np.ndarray:  # noqa: ANN401 - ForecastRecord or StoredRecord
    """Return the ``(S, H)`` sample paths of a stored forecast, float64.

    From the ``samples`` column, unless ``payload["samples"]`` holds them: a row written by a
    version before that column (before the migration, or by an older daemon still running
    beside newer ones during an upgrade, whose upsert leaves the column as it was). This
    version never writes paths into the JSON, so paths there are the row's latest.
    """
    return paths_of(record.payload, record.samples)


def paths_of(payload: dict[str, Any], blob: bytes | None) -> np.ndarray:
    """:func:`samples_of` for a row's ``payload`` and ``samples`` read as columns.

    Raises:
        NotFoundError: no paths in either.
        ValueError: an unreadable ``samples`` value (:func:`decode_samples`).

    """
    if "samples" in payload:
        return np.asarray(payload["samples"], dtype=np.float64)
    if blob is None:
        raise NotFoundError("the stored forecast has no sample paths; the next refresh "
                            "writes them")
    return decode_samples(blob)


def save_forecasts(store: Store, records: list[dict[str, Any]]) -> None:
    """Replace the latest forecast of each series in ``records`` (one transaction).

    One ``executemany`` of the upsert for all records (the forecast refresh stores every
    series each period). Payloads must hold finite numbers (a forecast's always do).
    """
    if not records:
        return
    table = ForecastRecord.__table__
    keys = list(records[0])
    ins = insert_for(store.dialect, table).values(
        {k: bindparam(k, type_=_OrjsonJSON() if k == "payload" else table.c[k].type)
         for k in keys})
    stmt = ins.on_conflict_do_update(
        index_elements=["series_id"],
        set_={k: ins.excluded[k] for k in keys if k != "series_id"},
    )
    with write_tx(store.engine) as conn:
        conn.execute(stmt, records)


def latest_forecast(session: Session, entity: str, metric: str) -> ForecastRecord:
    """Return the latest forecast of ``entity``/``metric``.

    Raises:
        NotFoundError: no such series, or nothing forecast for it yet.

    """
    sid = series_id(session, entity, metric)
    rec = session.get(ForecastRecord, sid)
    if rec is None:
        raise NotFoundError(
            f"no forecast for {entity!r}/{metric!r} yet; the refresh runs every "
            "TIDEWISE_FORECAST_INTERVAL_S seconds over series with recent data"
        )
    return rec


@dataclasses.dataclass(frozen=True)
class StoredRecord:
    """A stored forecast as :func:`entity_forecasts` reads it (the fields policies use)."""

    series_id: int
    computed_at: int
    start: float
    step: float
    model: str
    fallback: bool
    payload: dict[str, Any]
    samples: bytes | None = None


def _loads(text: str) -> Any:  # noqa: ANN401
    """Decode a payload: orjson (what wrote it), else the stdlib (e.g. a NaN token)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _stored_records(session: Session, where: Any) -> dict[str, dict[str, StoredRecord]]:  # noqa: ANN401
    """Read the stored forecasts of the entities ``where`` selects, by entity and metric."""
    t = ForecastRecord.__table__
    rows = session.connection().execute(
        select(Entity.name, Series.metric, t.c.series_id, t.c.computed_at, t.c.start,
               t.c.step, t.c.model, t.c.fallback, cast(t.c.payload, Text), t.c.samples)
        .join(Series, Series.id == t.c.series_id)
        .join(Entity, Entity.id == Series.entity_id)
        .where(where))
    out: dict[str, dict[str, StoredRecord]] = {}
    for name, m, sid, at, start, step, model, fb, body, blob in rows:
        out.setdefault(name, {})[m] = StoredRecord(
            int(sid), int(at), float(start), float(step), model, bool(fb), _loads(body),
            None if blob is None else bytes(blob))
    return out


def entity_forecasts(session: Session, entity: str) -> dict[str, StoredRecord]:
    """Return the latest forecast of every series of ``entity`` that has one, by metric.

    One query for the entity (a decision rebuilds a joint forecast from all its members),
    payloads decoded by orjson; an unknown entity gives ``{}``.
    """
    return _stored_records(session, Entity.name == entity).get(entity, {})


def entities_forecasts(
    session: Session, entities: list[str]
) -> dict[str, dict[str, StoredRecord]]:
    """:func:`entity_forecasts` of each of ``entities`` (every name a key), in few queries.

    One query per :data:`service.store.sql.CHUNK` entities instead of one per entity (the
    forecast job's decisions read the stored forecasts of every ``forecaster: stored``
    target of its shards each period).
    """
    out: dict[str, dict[str, StoredRecord]] = {e: {} for e in entities}
    for part in chunks(entities):
        out.update(_stored_records(session, Entity.name.in_(list(part))))
    return out
