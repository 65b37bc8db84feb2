"""Feed a trace (canonical long frame) to a running daemon over HTTP.

Used by ``tidewise feed`` and ``scripts/demo.sh``. The frame comes from
``traces.load(path, format=None, step=None)``: columns entity, metric, ts (unix s), value;
``frame.attrs["kind"]`` is the entity kind and ``frame.attrs["units"]`` the metric units.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any

import orjson

from common.errors import InputError

if TYPE_CHECKING:  # pandas is heavy; only the feed command imports it
    import httpx
    import pandas as pd

DEFAULT_URL = "http://127.0.0.1:8080"


@dataclasses.dataclass
class FeedResult:
    """What a feed sent."""

    samples: int
    batches: int
    entities: int
    shift_s: int  # seconds added to every ts (0 without --shift-to-now)
    first_ts: int
    last_ts: int


def shift_offset(frame: pd.DataFrame, now: float) -> int:
    """Whole seconds to add so the frame's last sample lands one second before ``now``."""
    return int(math.floor(now)) - 1 - int(math.floor(float(frame["ts"].max())))


def feed_frame(
    frame: pd.DataFrame,
    client: httpx.Client,
    url: str = DEFAULT_URL,
    batch_size: int = 5000,
    shift_to_now: bool = False,
    now: float | None = None,
    window_s: float | None = None,
) -> FeedResult:
    """POST ``frame`` to ``url``/v1/metrics in JSON batches of ``batch_size`` samples.

    Args:
        frame: canonical long frame; ``attrs["kind"]`` must be vm, function or server.
        client: the HTTP client (tests pass one bound to an in-process server).
        url: base URL of the daemon.
        batch_size: samples per request.
        shift_to_now: move every ts by one offset so the trace ends now (old traces would
            otherwise be older than the raw retention and refused).
        now: the clock for the shift (unix s); default ``time.time()``.
        window_s: feed only the last ``window_s`` seconds of the trace.

    Raises:
        InputError: the frame is unusable or the daemon refused a batch (with its reason).

    """
    kinds = _entity_kinds(frame)
    missing = {"entity", "metric", "ts", "value"} - set(frame.columns)
    if missing:
        raise InputError(f"missing columns {sorted(missing)}", where="trace")
    if frame.empty:
        raise InputError("the trace has no samples", where="trace")
    if frame.attrs.get("relative_time") and not shift_to_now:
        raise InputError(
            "the trace has relative timestamps; add --shift-to-now to place it at the present",
            where="trace",
        )
    if window_s is not None:
        frame = frame[frame["ts"] > float(frame["ts"].max()) - window_s]
    offset = shift_offset(frame, time.time() if now is None else now) if shift_to_now else 0
    units: dict[str, str] = dict(frame.attrs.get("units") or {})
    entity = frame["entity"].astype(str).to_numpy()
    metric = frame["metric"].astype(str).to_numpy()
    ts = (frame["ts"].to_numpy(dtype="float64") // 1).astype("int64") + offset
    value = frame["value"].to_numpy(dtype="float64")
    endpoint = url.rstrip("/") + "/v1/metrics"
    batches = 0
    for lo in range(0, len(ts), batch_size):
        hi = min(lo + batch_size, len(ts))
        samples: list[dict[str, Any]] = []
        for e, m, t, v in zip(
            entity[lo:hi].tolist(),
            metric[lo:hi].tolist(),
            ts[lo:hi].tolist(),
            value[lo:hi].tolist(),
            strict=True,
        ):
            s = {"entity": e, "kind": kinds[e], "metric": m, "ts": t, "value": v}
            if m in units:
                s["unit"] = str(units[m])[:64]
            samples.append(s)
        _post(client, endpoint, orjson.dumps({"samples": samples}), lo)
        batches += 1
    return FeedResult(
        samples=len(ts),
        batches=batches,
        entities=len(set(entity.tolist())),
        shift_s=offset,
        first_ts=int(ts.min()),
        last_ts=int(ts.max()),
    )


_KINDS = ("vm", "function", "server")


def _entity_kinds(frame: pd.DataFrame) -> dict[str, str]:
    """Each entity's kind: ``attrs["kind"]``, or per entity ``attrs["kinds"]`` when mixed.

    A long CSV holding several kinds (an export of a store with VMs and functions) reads back
    with ``kind="mixed"`` and the per-entity map, and feeds back as it was.

    Raises:
        InputError: no kind, or a kind the daemon does not know.

    """
    kind = frame.attrs.get("kind")
    per_entity = frame.attrs.get("kinds") if kind == "mixed" else None
    entities = frame["entity"].astype(str).unique().tolist() if "entity" in frame else []
    if per_entity:
        kinds = {e: str(per_entity.get(e) or "") for e in entities}
    elif kind:
        kinds = dict.fromkeys(entities, str(kind))
    else:
        raise InputError(
            "the trace does not say its entity kind; give a long CSV a `kind` column "
            f"({', '.join(_KINDS)})",
            where="trace",
        )
    for e, k in kinds.items():
        if k not in _KINDS:
            raise InputError(
                f"entity {e!r} has kind {k!r}; the daemon knows {', '.join(_KINDS)}",
                where="trace",
            )
    return kinds


def _post(client: httpx.Client, endpoint: str, body: bytes, first_row: int) -> None:
    import httpx

    try:
        resp = client.post(endpoint, content=body, headers={"content-type": "application/json"})
    except httpx.TransportError as exc:
        raise InputError(
            f"cannot reach {endpoint} ({type(exc).__name__}); is `tidewise serve` running?",
            where="--url",
        ) from None
    if resp.status_code != 200:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        raise InputError(
            f"the daemon refused the batch starting at trace row {first_row} "
            f"(HTTP {resp.status_code}): {detail}",
            where="feed",
        )
