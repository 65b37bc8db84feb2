"""/docs is Swagger UI served by the daemon itself: no CDN on the page where tokens are typed."""

from __future__ import annotations

import re

import pytest

from service.dashboard import DOCS_FILES

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def test_docs_page_loads_every_asset_from_the_daemon(http):
    page = http.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "http://" not in html and "https://" not in html  # nothing from another origin
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src" not in csp  # scripts: self only
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assets = [r for r in refs if not r.startswith("data:")]
    assert {"/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css", "/docs/swagger-init.js"} <= set(
        assets
    )
    for ref in assets:
        r = http.get(ref)
        assert r.status_code == 200, ref
        assert r.headers["content-type"] == DOCS_FILES[ref.rsplit("/", 1)[1]]
        assert len(r.content) > 100
    assert 'data-openapi="/openapi.json"' in html
    assert "SwaggerUIBundle" in http.get("/docs/swagger-ui-bundle.js").text
    init = http.get("/docs/swagger-init.js").text
    assert "validatorUrl: null" in init  # the public validator never sees the spec
    assert "<script>" not in html  # no inline script: the CSP can forbid them


def test_other_docs_pages_and_files_are_not_served(http):
    assert http.get("/redoc").status_code == 404  # would load ReDoc from a CDN
    assert http.get("/docs/oauth2-redirect").status_code == 404
    r = http.get("/docs/swagger-ui.LICENSE.txt")
    assert r.status_code == 404 and "no docs file" in r.text
    assert http.get("/docs/..%2Fdb.py").status_code == 404


def test_docs_render_in_headless_chromium_with_every_other_host_unreachable(live_url, tmp_path):
    """Swagger UI runs under the page's CSP and draws every operation, air-gapped."""
    import subprocess

    from tests.daemon.browser import CHROMIUM_FLAGS
    from tests.daemon.conftest_io import need_binaries

    binary = need_binaries("chromium")["chromium"]
    proc = subprocess.run(
        [
            binary,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium'}",
            # every host but the daemon's is unreachable: a CDN reference could not load
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--dump-dom",
            f"{live_url}/docs",
        ],
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout.decode()
    assert "swagger-ui" in dom and 'class="opblock' in dom, dom[:2000]  # operations drawn
    for path in ("/v1/metrics", "/v1/targets", "/v1/keda/{target}", "/readyz"):
        assert path in dom, path
