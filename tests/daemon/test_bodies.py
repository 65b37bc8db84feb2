"""Request bodies over a real socket: token before body, size while streaming, memory bound.

Raw sockets, because the point is *when* the server answers: a 100 MiB body is announced and
only its first 64 KiB are sent; a server that checks the token first answers before the rest
arrives, one that reads the body first never answers within the timeout.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from service import migrate
from tests.daemon.conftest import TOKENS, scaling_target, serve_in_thread

SQLITE = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)

HUGE = 100 * 2**20  # announced, never sent
#: (path, content type, scope) of every route that takes a body.
BODY_ROUTES = [
    ("/v1/targets", "application/json", "act"),
    ("/v1/metrics", "application/json", "ingest"),
    ("/api/v1/write", "application/x-protobuf", "ingest"),
]


@contextmanager
def connect(url: str) -> Iterator[socket.socket]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        yield sock


def head(
    path: str,
    *,
    length: int | None = None,
    token: str | None = None,
    content_type: str = "application/json",
    chunked: bool = False,
) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: tidewise", f"Content-Type: {content_type}"]
    if path == "/api/v1/write":
        lines += ["Content-Encoding: snappy", "X-Prometheus-Remote-Write-Version: 0.1.0"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    lines.append("Transfer-Encoding: chunked" if chunked else f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def response(sock: socket.socket, timeout: float) -> tuple[int, dict[str, str], dict]:
    """Read one answer (status, headers, JSON body) within ``timeout`` seconds."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before an answer: {data!r}"
        data += chunk
    raw_head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = raw_head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    while len(body) < int(headers["content-length"]):
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the answer"
        body += chunk
    return int(status_line.split()[1]), headers, json.loads(body)


def padded(obj: dict, size: int) -> bytes:
    """``obj`` as JSON of exactly ``size`` bytes (trailing spaces are valid JSON)."""
    raw = json.dumps(obj).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def samples(n: int, entity: str = "vm-1") -> dict:
    now = int(time.time())
    return {
        "samples": [
            {"entity": entity, "kind": "vm", "metric": "cpu", "ts": now - 60 + i, "value": float(i)}
            for i in range(n)
        ]
    }


@SQLITE
@pytest.mark.parametrize(("path", "content_type", "scope"), BODY_ROUTES)
def test_no_token_gets_401_before_the_body_is_read(live_url, path, content_type, scope):
    with connect(live_url) as sock:
        t0 = time.monotonic()
        sock.sendall(head(path, length=HUGE, content_type=content_type))
        sock.sendall(b"x" * 65536)
        status, headers, body = response(sock, timeout=3)
        took = time.monotonic() - t0
    assert status == 401, body
    assert body["error"] == "Unauthorized" and body["scope"] == scope
    assert headers["www-authenticate"].startswith("Bearer")
    assert headers["connection"] == "close"  # the rest of the body is not drained
    assert took < 2


@SQLITE
@pytest.mark.parametrize(("path", "content_type", "scope"), BODY_ROUTES)
def test_a_token_without_the_scope_gets_403_before_the_body_is_read(
    live_url, path, content_type, scope
):
    wrong = TOKENS["read"] if scope != "read" else TOKENS["ingest"]
    with connect(live_url) as sock:
        sock.sendall(head(path, length=HUGE, token=wrong, content_type=content_type))
        sock.sendall(b"x" * 65536)
        status, _, body = response(sock, timeout=3)
    assert status == 403 and body["scope"] == scope, body


@SQLITE
def test_a_declared_length_over_the_limit_is_413_at_once(settings_factory):
    s = settings_factory(max_body_bytes=200_000, max_json_body_bytes=4096)
    migrate.upgrade(s)
    with serve_in_thread(s) as url:
        for path, token, variable, limit in [
            ("/v1/targets", TOKENS["act"], "TIDEWISE_MAX_JSON_BODY_BYTES", 4096),
            ("/v1/metrics", TOKENS["ingest"], "TIDEWISE_MAX_BODY_BYTES", 200_000),
        ]:
            with connect(url) as sock:
                sock.sendall(head(path, length=limit + 1, token=token))
                status, headers, body = response(sock, timeout=3)  # nothing of the body sent
            assert status == 413, body
            assert body["error"] == "BodyTooLargeError"
            assert variable in body["detail"] and str(limit) in body["detail"]
            assert body["problems"][0]["where"] == "body"
            assert headers["connection"] == "close"


@SQLITE
@pytest.mark.parametrize(("path", "scope"), [("/v1/targets", "act"), ("/v1/metrics", "ingest")])
def test_a_chunked_body_is_cut_while_it_streams(settings_factory, path, scope):
    s = settings_factory(max_body_bytes=200_000, max_json_body_bytes=4096)
    migrate.upgrade(s)
    limit = 4096 if path == "/v1/targets" else 200_000
    with serve_in_thread(s) as url, connect(url) as sock:
        sock.sendall(head(path, token=TOKENS[scope], chunked=True))
        piece = b"x" * 1024
        sent = 0
        while sent <= limit:  # one chunk past the limit, and the stream stays open
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
        status, _, body = response(sock, timeout=3)
    assert status == 413 and str(limit) in body["detail"], body


@SQLITE
def test_targets_and_ingest_still_work_under_the_guard(http):
    r = http.post("/v1/targets", json=scaling_target())
    assert r.status_code == 201, r.text
    r = http.post("/v1/metrics", json=samples(3))
    assert r.status_code == 200 and r.json() == {"stored": 3}
    r = http.post("/v1/targets", content=b'{"kind": ', headers={"content-type": "application/json"})
    assert r.status_code == 422  # a broken body still reaches the route's own validation


@SQLITE
def test_buffered_bodies_are_bounded_503_with_retry_after(settings_factory):
    size = 100_000
    s = settings_factory(max_body_bytes=size, max_buffered_bytes=2 * size, body_wait_s=0.3)
    migrate.upgrade(s)
    body_a, body_b, body_c = (padded(samples(20, e), size) for e in ("a", "b", "c"))
    with serve_in_thread(s) as url, connect(url) as a, connect(url) as b, connect(url) as c:
        token = TOKENS["ingest"]
        for sock, body in ((a, body_a), (b, body_b)):  # both half sent: the budget is full
            sock.sendall(head("/v1/metrics", length=size, token=token) + body[: size // 2])
        time.sleep(0.2)
        t0 = time.monotonic()
        c.sendall(head("/v1/metrics", length=size, token=token) + body_c)
        status, headers, err = response(c, timeout=5)
        waited = time.monotonic() - t0
        assert status == 503, err
        assert headers["retry-after"] == "1" and headers["connection"] == "close"
        assert err["error"] == "ServerBusyError"
        assert "TIDEWISE_MAX_BUFFERED_BYTES" in err["detail"]
        assert 0.25 <= waited < 3  # waited TIDEWISE_BODY_WAIT_S, not forever
        for sock, body in ((a, body_a), (b, body_b)):
            sock.sendall(body[size // 2 :])
            status, _, ok = response(sock, timeout=10)
            assert (status, ok) == (200, {"stored": 20})
    with serve_in_thread(s) as url, connect(url) as d:  # the budget was given back
        d.sendall(head("/v1/metrics", length=size, token=token) + body_c)
        assert response(d, timeout=10)[:1] == (200,)


@SQLITE
def test_a_request_waits_for_room_within_the_bounded_wait(settings_factory):
    size = 100_000
    s = settings_factory(max_body_bytes=size, max_buffered_bytes=size, body_wait_s=10)
    migrate.upgrade(s)
    body_a, body_b = (padded(samples(5, e), size) for e in ("a", "b"))
    with serve_in_thread(s) as url, connect(url) as a, connect(url) as b:
        token = TOKENS["ingest"]
        a.sendall(head("/v1/metrics", length=size, token=token) + body_a[:1000])
        time.sleep(0.2)
        b.sendall(head("/v1/metrics", length=size, token=token) + body_b)  # waits for a
        time.sleep(0.3)
        a.sendall(body_a[1000:])
        assert response(a, timeout=10)[0] == 200
        status, _, ok = response(b, timeout=10)
        assert (status, ok) == (200, {"stored": 5})


@SQLITE
def test_healthz_answers_while_a_big_body_streams(settings_factory):
    s = settings_factory()
    migrate.upgrade(s)
    with serve_in_thread(s) as url, connect(url) as slow, connect(url) as probe:
        slow.sendall(head("/v1/metrics", length=8 * 2**20, token=TOKENS["ingest"]))
        slow.sendall(b" " * 2**20)
        t0 = time.monotonic()
        probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: tidewise\r\n\r\n")
        status, _, body = response(probe, timeout=3)
        assert (status, body) == (200, {"status": "ok"})
        assert time.monotonic() - t0 < 1


def test_a_budget_smaller_than_one_body_is_refused_at_start():
    from common.errors import ConfigError
    from service.config import load_settings

    with pytest.raises(ConfigError) as info:
        load_settings(max_body_bytes=64 * 2**20, max_buffered_bytes=32 * 2**20)
    assert "TIDEWISE_MAX_BUFFERED_BYTES" in str(info.value)
