"""Commands of this area for the ``tidewise`` CLI (see :mod:`service.cli`)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this area's commands to ``app``."""
