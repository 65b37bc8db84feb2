"""The store reads behind the forecast and decision series of ``GET /metrics``.

A scrape reads the store a bounded number of times, whatever the number of series: one
query for the latest forecast of every series (heads only: no payload) with the time of its
newest raw sample, one count, the payloads of the forecasts that changed since the last
scrape (in chunks of :data:`CHUNK` ids), and one query for the targets with their latest
decision. Every list is capped with ``LIMIT`` (:mod:`service.promexport` derives the caps
from ``TIDEWISE_EXPORT_MAX_SERIES``).

Kept apart from :mod:`service.store` so the exporter's queries live in one place.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.store import forecasts as forecast_store
from service.store.tables import DecisionRecord, Entity, ForecastRecord, Sample, Series, Target

log = logging.getLogger("tidewise.promreads")

#: Forecast ids per payload query (keeps ``IN (...)`` lists short on both databases).
CHUNK = 200


@dataclasses.dataclass(frozen=True)
class ForecastHead:
    """The latest forecast of one series, without its payload."""

    series_id: int
    entity: str
    metric: str
    computed_at: int
    model: str
    fallback: bool
    last_sample_ts: int | None  # newest raw sample of the series (None: all expired)


@dataclasses.dataclass(frozen=True)
class TargetDecision:
    """A target and its latest decision (``computed_at`` None: not decided yet)."""

    name: str
    kind: str  # scenario: vm, serverless, power
    computed_at: int | None
    valid: bool | None
    fallback: bool | None
    desired: dict[str, Any] | None


def forecast_heads(session: Session, limit: int) -> tuple[list[ForecastHead], int]:
    """Return the first ``limit`` stored forecasts (by entity, metric) and how many exist."""
    F = ForecastRecord  # noqa: N806
    newest = (
        select(func.max(Sample.ts))
        .where(Sample.series_id == F.series_id)
        .correlate(F)
        .scalar_subquery()
    )
    rows = session.execute(
        select(F.series_id, Entity.name, Series.metric, F.computed_at, F.model, F.fallback,
               newest)
        .join(Series, Series.id == F.series_id)
        .join(Entity, Entity.id == Series.entity_id)
        .order_by(Entity.name, Series.metric)
        .limit(max(0, limit))
    )
    heads = [ForecastHead(int(i), e, m, int(c), mo, bool(fb), None if t is None else int(t))
             for i, e, m, c, mo, fb, t in rows]
    total = int(session.scalar(select(func.count()).select_from(F)) or 0)
    return heads, total


def forecast_payloads(
    session: Session, ids: Iterable[int], *, samples: bool = False
) -> dict[int, tuple[int, float, dict[str, Any]]]:
    """Return ``series_id -> (computed_at, step, payload)`` of the stored forecasts of ``ids``.

    ``samples``: also read the sample paths, as ``payload["samples"]`` ``(S, H)`` (only what
    a quantile level outside the stored columns needs; they are most of a row's bytes).
    """
    ids = list(ids)
    out: dict[int, tuple[int, float, dict[str, Any]]] = {}
    F = ForecastRecord  # noqa: N806
    cols = [F.series_id, F.computed_at, F.step, F.payload] + ([F.samples] if samples else [])
    for i in range(0, len(ids), CHUNK):
        rows = session.execute(select(*cols).where(F.series_id.in_(ids[i:i + CHUNK])))
        for sid, at, step, payload, *blob in rows:
            payload = payload or {}
            if blob and blob[0] is not None:
                try:
                    payload = {**payload,
                               "samples": forecast_store.paths_of(payload, blob[0])}
                except ValueError as exc:  # one bad row must not cost the others
                    log.warning("forecast of series %d: stored paths unreadable (%s)", sid,
                                exc)
            out[int(sid)] = (int(at), float(step), payload)
    return out


def target_decisions(session: Session, limit: int) -> tuple[list[TargetDecision], int]:
    """Return the first ``limit`` targets (by name) with their latest decision, and how many."""
    D = DecisionRecord  # noqa: N806
    rows = session.execute(
        select(Target.name, Target.kind, D.computed_at, D.valid, D.fallback, D.desired)
        .outerjoin(D, D.target_id == Target.id)
        .order_by(Target.name)
        .limit(max(0, limit))
    )
    out = [TargetDecision(n, k, None if c is None else int(c), v, fb, d)
           for n, k, c, v, fb, d in rows]
    total = int(session.scalar(select(func.count()).select_from(Target)) or 0)
    return out, total
