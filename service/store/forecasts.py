"""The latest forecast of each series (replaced by every refresh)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from service.store.db import Store, write_tx
from service.store.errors import NotFoundError
from service.store.samples import series_id
from service.store.sql import insert_for
from service.store.tables import ForecastRecord


def save_forecasts(store: Store, records: list[dict[str, Any]]) -> None:
    """Replace the latest forecast of each series in ``records`` (one transaction)."""
    if not records:
        return
    with write_tx(store.engine) as conn:
        for rec in records:
            ins = insert_for(store.dialect, ForecastRecord.__table__).values(**rec)
            conn.execute(ins.on_conflict_do_update(
                index_elements=["series_id"],
                set_={k: ins.excluded[k] for k in rec if k != "series_id"},
            ))


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
