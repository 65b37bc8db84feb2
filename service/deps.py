"""FastAPI dependencies shared by every router: the app's store, its settings, a read session.

Defined once, so every route sees the same objects and a test that overrides
:func:`get_app_settings` (``app.dependency_overrides[get_app_settings] = lambda: other``)
changes them for every route at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service.config import Settings
from service.store.db import Store


def get_store(request: Request) -> Store:
    """Return the app's open store."""
    return request.app.state.store


def get_app_settings(request: Request) -> Settings:
    """Return the settings the app was created with."""
    return request.app.state.settings


def get_session(store: Annotated[Store, Depends(get_store)]) -> Iterator[Session]:
    """Yield a read session, closed after the request."""
    with store.sessions() as session:
        yield session


StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SessionDep = Annotated[Session, Depends(get_session)]
