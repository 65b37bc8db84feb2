"""The canonical long CSV: Tidewise's own storage export / import format.

Header ``entity,metric,ts,value`` (any order; an optional ``kind`` column; other columns
such as ``lo-90`` / ``hi-90`` are ignored). ``ts`` is unix seconds (float) or an ISO-8601
date-time (read as UTC unless it carries an offset). The file may be gzipped. Rows need not
be ordered (they are sorted), but an (entity, metric, ts) key may appear only once and
every value must be a finite number.

Attributes: ``kind`` is the ``kind`` column's value when it has one value (``"mixed"`` with
``attrs["kinds"]`` = entity -> kind otherwise; ``""`` without the column); ``step`` is the
common spacing when every series is regular with the same spacing, else None;
``relative_time`` is True when all ts are below 946,684,800 (2000-01-01), i.e. they cannot
be unix times of real traces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from traces.loaders import _common as c

NAME = "long"
REQUIRED = ["entity", "metric", "ts", "value"]
_UNIX_2000 = 946_684_800.0


def sniff(path: Path) -> bool:
    """Return True for a file whose header holds entity, metric, ts and value."""
    if path.is_dir():
        return False
    return set(REQUIRED) <= set(c.header_fields(path))


def load(path: Path) -> pd.DataFrame:
    """Read a canonical long CSV (see module docstring)."""
    if path.is_dir():
        c.fail("pass one long CSV file, not a folder", path)
    df = c.read_csv(path, dtype={"entity": str, "metric": str, "kind": str},
                    keep_default_na=False, na_values=[""])
    df.columns = [str(x).strip() for x in df.columns]
    c.require_columns(df, REQUIRED, path, "a long trace (entity, metric, ts, value)")
    for col in ("entity", "metric"):
        empty = df[col].isna().to_numpy()
        if empty.any():
            c.fail(f"expected a non-empty {col} name", path, int(np.argmax(empty)) + 2, col)
    if df["ts"].dtype.kind in "iuf":
        ts = c.numeric(df["ts"], path, "ts")
    else:
        raw = df["ts"].astype("string")
        as_num = pd.to_numeric(raw, errors="coerce")
        if as_num.notna().all():
            ts = as_num.to_numpy(dtype="float64")
        else:
            parsed = pd.to_datetime(raw, utc=True, errors="coerce", format="ISO8601")
            bad = parsed.isna().to_numpy()
            if bad.any():
                i = int(np.argmax(bad))
                c.fail(f"expected unix seconds or an ISO-8601 date-time, found {raw.iloc[i]!r}",
                       path, i + 2, "ts")
            ts = parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").astype(
                "int64") / 1e9
    value = c.numeric(df["value"], path, "value")
    entity = df["entity"].astype(str).str.strip().to_numpy(dtype=object)
    metric = df["metric"].astype(str).str.strip().to_numpy(dtype=object)
    key = pd.DataFrame({"e": entity, "m": metric, "t": ts})
    dup = key.duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        c.fail(f"({entity[i]!r}, {metric[i]!r}, ts={ts[i]!r}) appears twice; each entity, "
               "metric and time may have one value", path, i + 2, "ts")

    extra: dict = {}
    kind = ""
    if "kind" in df.columns:
        kinds = df["kind"].fillna("").astype(str).str.strip()
        distinct = sorted(set(kinds))
        if len(distinct) == 1:
            kind = distinct[0]
        else:
            kind = "mixed"
            extra["kinds"] = c.SharedDict(zip(entity, kinds, strict=True))
    frame = c.finish(entity, metric, ts, value, source=path, format=NAME, step=None,
                     kind=kind, relative_time=bool(len(ts)) and float(np.max(ts)) < _UNIX_2000,
                     extra_attrs=extra)
    frame.attrs["step"] = _common_step(frame)
    return frame


def _common_step(frame: pd.DataFrame) -> float | None:
    """Return the one spacing shared by every series, or None (irregular or mixed)."""
    if len(frame) < 2:
        return None
    ts = frame["ts"].to_numpy()
    same = (frame["entity"].to_numpy()[1:] == frame["entity"].to_numpy()[:-1]) & (
        frame["metric"].to_numpy()[1:] == frame["metric"].to_numpy()[:-1])
    d = np.diff(ts)[same]
    if len(d) == 0:
        return None
    step = float(np.median(d))
    return step if step > 0 and np.allclose(d, step, rtol=0, atol=1e-6 * max(step, 1)) else None


def save(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a canonical frame as a long CSV (gzipped when the name ends in ``.gz``).

    ``kind`` is written as a column when ``frame.attrs`` names one, so the file reads back
    with the same attributes. Written to a temporary file first, then renamed, so a failure
    never leaves half a file.
    """
    path = Path(path)
    out = frame.loc[:, ["entity", "metric", "ts", "value"]].copy()
    kinds = frame.attrs.get("kinds")
    if kinds:  # a mixed export read back: keep each entity's own kind
        out["kind"] = frame["entity"].map(kinds).fillna(frame.attrs.get("kind") or "")
    elif frame.attrs.get("kind"):
        out["kind"] = frame.attrs["kind"]
    tmp = path.with_name(path.name + ".part")
    out.to_csv(tmp, index=False, float_format="%.17g",
               compression="gzip" if path.name.endswith(".gz") else None)
    tmp.replace(path)
    return path
