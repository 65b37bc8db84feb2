"""The ingest service: a request body in, the number of samples stored out.

Kept apart from the HTTP route (which only reads headers and the body) so the same path can
serve other front ends (a queue consumer, a Prometheus remote-write adapter).
"""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

from service import ingest
from service.config import Settings
from service.ingest import BodyTooLargeError, MalformedBodyError, Problem
from service.store import samples as sample_store
from service.store.db import Store

if TYPE_CHECKING:
    from starlette.requests import Request

ENCODINGS = ("identity", "gzip")


def check_encoding(content_encoding: str | None) -> str:
    """Normalise a Content-Encoding header to ``identity`` or ``gzip``.

    Raises:
        UnsupportedMediaTypeError: any other encoding (HTTP 415).

    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in ENCODINGS:
        raise ingest.UnsupportedMediaTypeError(
            f"unsupported Content-Encoding {encoding!r}; send identity or gzip",
            where="Content-Encoding",
        )
    return encoding


def gunzip(body: bytes, limit: int) -> bytes:
    """Decompress a gzip body of one or more members, refusing output over ``limit`` bytes.

    Every member is inflated, as ``gzip -d`` does (``cat a.gz b.gz`` and some log shippers
    send several); the limit counts the output of all of them together and is checked while
    inflating, so a small body never makes the server allocate more than ``limit`` bytes.

    Raises:
        MalformedBodyError: a member is malformed or truncated, or bytes that do not start a
            gzip member follow the last one (HTTP 400).
        BodyTooLargeError: the inflated body exceeds ``limit`` (HTTP 413).

    """
    parts: list[bytes] = []
    size = 0
    view = memoryview(body)
    pos, end = 0, len(body)
    member = 0
    while True:
        member += 1
        inflater = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
        # The first member gets the whole body (the usual single member: one call); later
        # ones are fed in growing pieces, because at a member's end zlib copies the rest of
        # what it was given into unused_data: the whole remaining body for every member
        # would be quadratic (200,000 empty members took 70 s, in pieces 1 s).
        piece = end if member == 1 else 1024
        while not inflater.eof:
            if pos >= end:
                raise MalformedBodyError([Problem(f"truncated gzip body (member {member})")])
            chunk = view[pos : pos + piece]
            try:
                # At most limit - size + 1 bytes: one byte over is enough to refuse.
                out = inflater.decompress(chunk, limit - size + 1)
            except zlib.error as exc:
                raise MalformedBodyError(
                    [Problem(f"malformed gzip body (member {member}): {exc}")]
                ) from None
            size += len(out)
            if size > limit or inflater.unconsumed_tail:
                raise BodyTooLargeError(
                    f"decompressed body exceeds the limit of {limit} bytes "
                    "(TIDEWISE_MAX_BODY_BYTES); send smaller batches",
                    where="body",
                )
            if out:
                parts.append(out)
            pos += len(chunk) - len(inflater.unused_data)
            piece = min(2 * piece, 1 << 20)
        if pos >= end:
            break
        if view[pos : pos + 2] != b"\x1f\x8b":
            raise MalformedBodyError(
                [
                    Problem(
                        f"trailing data after gzip member {member}: {end - pos} bytes that "
                        "do not start another gzip member"
                    )
                ]
            )
    return parts[0] if len(parts) == 1 else b"".join(parts)


def store_body(
    store: Store, settings: Settings, body: bytes, media: str, encoding: str, now: int
) -> int:
    """Decode, parse, validate and store one batch; return how many samples were stored.

    Args:
        store: the open store.
        settings: the limits to apply (body size, clock skew, raw retention).
        body: the request body as received.
        media: ``json`` or ``ndjson`` (see :func:`service.ingest.media_type`).
        encoding: ``identity`` or ``gzip`` (see :func:`check_encoding`).
        now: the server clock (unix s).

    Raises:
        InputError: subclasses carrying the HTTP status and the problems found; nothing is
            stored then.

    """
    cfg = settings
    data = gunzip(body, cfg.max_body_bytes) if encoding == "gzip" else body
    batch = ingest.read_batch(data, media, now, cfg.max_future_s, oldest=now - cfg.raw_retention_s)
    return sample_store.ingest(store, batch)


async def read_body(request: Request, limit: int) -> bytes:
    """Read the request body, refusing it (413) as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError(
            f"body of {int(declared)} bytes exceeds the limit of {limit} bytes "
            "(TIDEWISE_MAX_BODY_BYTES); send smaller batches",
            where="body",
        )
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLargeError(
                f"body exceeds the limit of {limit} bytes (TIDEWISE_MAX_BODY_BYTES); "
                "send smaller batches",
                where="body",
            )
        chunks.append(chunk)
    return b"".join(chunks)
