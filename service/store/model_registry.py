"""The model registry: trained models, at most one current version per name."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from common.errors import InputError
from service.store.errors import NotFoundError
from service.store.tables import ModelRecord


def register_model(
    session: Session,
    name: str,
    version: str,
    artifact_path: str,
    trained_on: str = "",
    metrics: dict[str, Any] | None = None,
    make_current: bool = True,
) -> ModelRecord:
    """Record a trained model; with ``make_current`` it becomes the current one of ``name``.

    The caller commits. Raises :class:`InputError` when (name, version) exists already.
    """
    exists = session.execute(
        select(ModelRecord.id).where(ModelRecord.name == name, ModelRecord.version == version)
    ).first()
    if exists is not None:
        raise InputError(
            f"model {name!r} version {version!r} is registered already; use a new version",
            where="version",
        )
    if make_current:
        session.execute(
            update(ModelRecord)
            .where(ModelRecord.name == name, ModelRecord.is_current.is_(True))
            .values(is_current=False)
        )
    record = ModelRecord(
        name=name,
        version=version,
        trained_on=trained_on,
        metrics=dict(metrics or {}),
        artifact_path=artifact_path,
        is_current=make_current,
    )
    session.add(record)
    session.flush()
    return record


def list_models(session: Session, name: str | None = None) -> list[ModelRecord]:
    """List registered models (of ``name``, or all), oldest first."""
    q = select(ModelRecord).order_by(ModelRecord.name, ModelRecord.id)
    if name is not None:
        q = q.where(ModelRecord.name == name)
    return list(session.scalars(q))


def current_model(session: Session, name: str) -> ModelRecord | None:
    """Return the current version of model ``name``, or None when none is registered."""
    return session.scalars(
        select(ModelRecord).where(ModelRecord.name == name, ModelRecord.is_current.is_(True))
    ).one_or_none()


def get_model(session: Session, model_id: int) -> ModelRecord:
    """Return the registered model with id ``model_id``.

    Raises:
        NotFoundError: no such id.

    """
    record = session.get(ModelRecord, model_id)
    if record is None:
        raise NotFoundError(f"no registered model has id {model_id}; `tidewise models list`")
    return record


def set_current_model(session: Session, model_id: int) -> ModelRecord:
    """Make model ``model_id`` the current version of its name (the caller commits).

    Raises:
        NotFoundError: no such id.

    """
    record = get_model(session, model_id)
    session.execute(
        update(ModelRecord)
        .where(ModelRecord.name == record.name, ModelRecord.id != record.id)
        .values(is_current=False)
    )
    record.is_current = True
    session.flush()
    return record
