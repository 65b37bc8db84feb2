"""Fixtures of the trace-loader tests: where the real public traces are, and small writers."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def shared_data() -> Path | None:
    """``<repo>/../shared/data`` (or /work/shared/data), or None when absent."""
    for candidate in (REPO.parent / "shared" / "data", Path("/work/shared/data")):
        if candidate.is_dir():
            return candidate
    return None


@pytest.fixture
def shared() -> Path:
    """The real traces folder; skips the test (with the reason) when it is not there."""
    path = shared_data()
    if path is None:
        pytest.skip("real traces not found at <repo>/../shared/data or /work/shared/data")
    return path


@pytest.fixture
def write(tmp_path):
    """Write ``text`` to ``tmp_path/name`` (gzipped when the name ends in .gz); return the path."""

    def _write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".gz"):
            with gzip.open(path, "wt", encoding="utf-8", newline="") as fh:
                fh.write(text)
        else:
            path.write_text(text, encoding="utf-8", newline="")
        return path

    return _write
