"""The web dashboard: static HTML/JS/CSS served by the daemon, reading the JSON API only.

``GET /docs`` serves Swagger UI from the vendored files in ``service/static/`` (no CDN).

``GET /`` redirects to ``GET /dashboard/``, a single page (``service/static/``) that shows,
for every declared target, its demand averaged over the forecast's buckets (``step_s``; the
raw 1-s samples behind a toggle, ``?raw=1``), the forecast fan (one band per stored interval),
for a scaling target its capacity (desired replicas x ``capacity``), the latest decision and
the action log; a banner above everything for each target whose input is stale or whose
forecast is the fallback (from ``GET /v1/forecasts``: ``input_stale``, ``fallback``,
``reason``); a free series browser; and the latest replay comparison read from
``TIDEWISE_REPLAY_REPORT``, drawn as ``cost_vs_sla.png`` is (SLA misses on x, cost on y),
each point's knob values on hover. ``?target=NAME`` shows one target. Every chart's legend
is built from the series it drew. docs/dashboard.md shows the page in its three states.

The page itself holds no data and needs no token; its requests to the API carry the bearer
token typed into the page (kept in the browser's ``localStorage``) or given in the URL
fragment ``#token=…`` (a fragment never reaches the server or its logs).

``GET /v1/replay/report`` (scope ``read``) serves the replay report:
``TIDEWISE_REPLAY_REPORT`` names a ``report.json`` written by ``tidewise replay --out DIR``,
its folder ``DIR``, or a folder of such folders (the newest ``*/report.json`` is served).
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from service.auth import ReadAuth
from service.config import Settings
from service.deps import SettingsDep
from service.openapi import errors
from service.store.errors import NotFoundError

log = logging.getLogger("tidewise.dashboard")

STATIC = Path(__file__).resolve().parent / "static"
#: The files the page is made of (nothing else under static/ is served).
FILES = {
    "index.html": "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
}


#: Every file of the page loads only from the daemon itself: no inline script or style, no
#: third-party origin (label values and policy explanations are data, never markup).
_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}


#: Swagger UI (``GET /docs``), vendored from swagger-ui-dist 5.35.0 (Apache-2.0, licence and
#: notice beside the files): the page where operators paste tokens loads nothing from a CDN,
#: and works air-gapped.
DOCS_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "swagger-init.js": "text/javascript; charset=utf-8",
}
#: Swagger UI sets inline styles (React), and shows its icons as data: images.
_DOCS_HEADERS = {
    **_HEADERS,
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
}
_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Tidewise API</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{root}/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui" data-openapi="{root}/openapi.json"></div>
<script src="{root}/docs/swagger-ui-bundle.js"></script>
<script src="{root}/docs/swagger-init.js"></script>
</body>
</html>
"""


class NoReportError(NotFoundError):
    """No replay report is configured or found (HTTP 404)."""


def find_report(path: Path | None) -> Path:
    """Locate the report.json ``path`` designates (see the module docstring).

    Raises:
        NoReportError: nothing configured, or no report.json there.

    """
    if path is None:
        raise NoReportError(
            "no replay report configured; set TIDEWISE_REPLAY_REPORT to the --out folder of "
            "`tidewise replay`"
        )
    if path.is_file():
        return path
    if (path / "report.json").is_file():
        return path / "report.json"
    candidates = sorted(
        (p for p in path.glob("*/report.json") if p.is_file()), key=lambda p: p.stat().st_mtime
    )
    if not candidates:
        raise NoReportError(
            f"TIDEWISE_REPLAY_REPORT={path}: no report.json there or in its sub-folders; run "
            f"`tidewise replay ... --out {path}`"
        )
    return candidates[-1]


def load_report(path: Path | None) -> dict[str, Any]:
    """Read the replay report plus where it came from and when it was written.

    Raises:
        NoReportError: nothing found, or the file is not a replay report.

    """
    found = find_report(path)
    try:
        report = json.loads(found.read_text())
    except (OSError, ValueError) as exc:
        raise NoReportError(f"{found}: not a readable JSON report ({exc})") from None
    if not isinstance(report, dict) or not isinstance(report.get("policies"), dict):
        raise NoReportError(f"{found}: not a replay report (no 'policies' object)")
    return {"path": str(found), "modified": int(found.stat().st_mtime), "report": report}


@contextlib.asynccontextmanager
async def _check_settings(app: Any) -> AsyncIterator[None]:  # noqa: ANN401 - the FastAPI app
    """Say early, when the app starts, that the configured report is not there (yet)."""
    cfg: Settings = app.state.settings
    if cfg.replay_report is not None:
        try:
            find_report(cfg.replay_report)
        except NoReportError as exc:  # a replay may write it later: a warning, not a failure
            log.warning("dashboard: %s", exc)
    yield


router = APIRouter(tags=["dashboard"], lifespan=_check_settings)


@router.get("/", include_in_schema=False)
def root() -> RedirectResponse:
    """Send a browser opening the daemon's address to the dashboard."""
    return RedirectResponse("/dashboard/", status_code=307)


@router.get("/dashboard", include_in_schema=False)
def dashboard_no_slash() -> RedirectResponse:
    """Relative asset links need the trailing slash."""
    return RedirectResponse("/dashboard/", status_code=307)


@router.get("/dashboard/", include_in_schema=False)
@router.get("/dashboard/{name}", include_in_schema=False)
def dashboard_file(name: str = "index.html") -> Response:
    """Serve one file of the page (only the files listed in :data:`FILES`)."""
    if name not in FILES:
        return Response(f"no dashboard file {name!r}", status_code=404, media_type="text/plain")
    return FileResponse(STATIC / name, media_type=FILES[name], headers=_HEADERS)


@router.get("/docs", include_in_schema=False)
def docs_page(request: Request) -> Response:
    """Serve Swagger UI for ``/openapi.json``, every asset from the daemon itself."""
    root = html.escape(request.scope.get("root_path", "").rstrip("/"), quote=True)
    return HTMLResponse(_DOCS_PAGE.format(root=root), headers=_DOCS_HEADERS)


@router.get("/docs/{name}", include_in_schema=False)
def docs_file(name: str) -> Response:
    """Serve one file of Swagger UI (only the files listed in :data:`DOCS_FILES`)."""
    if name not in DOCS_FILES:
        return Response(f"no docs file {name!r}", status_code=404, media_type="text/plain")
    # The files only change with a Tidewise release: cache them for a day.
    headers = {**_DOCS_HEADERS, "Cache-Control": "public, max-age=86400"}
    return FileResponse(STATIC / name, media_type=DOCS_FILES[name], headers=headers)


@router.get(
    "/v1/replay/report",
    summary="The latest replay report (TIDEWISE_REPLAY_REPORT)",
    responses=errors(401, 403, 404),
)
def replay_report(_who: ReadAuth, cfg: SettingsDep) -> dict[str, Any]:
    """Return ``{"path", "modified" (unix s), "report"}`` of the configured replay report."""
    return load_report(cfg.replay_report)
