"""Fisher Kubernetes container traces (HARMONY's dataset): ``container<n>.csv``.

Wide CSV: a ``date`` column (``YYYY-MM-DD HH:MM:SS``, read as UTC) and 11 indicator
columns, one row per 10 minutes. Indicator names are kept **as published** as metric names
(``load``, ``cpu.busy``, ``mem.memused``, ``container_memory_rss``, … — note
``container_cpu_usage_seconds_total`` is a cumulative counter), so they are not mapped onto
:data:`traces.frame.METRICS`; their units are those of the source.

``path`` is one file or a folder (every ``container*.csv[.gz]``). Output: entity = file stem
(``container1``), kind ``vm``, unix time, step 600 s. Dates must strictly increase; values
must all be present.

:func:`load_wide` returns the wide frame (date index × indicators) that the HARMONY
forecasting protocol works on.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from traces.loaders import _common as c

NAME = "fisher"
INDICATORS = [
    "load", "blkio.throttle.io_service_bytes_Async", "blkio.throttle.io_service_bytes_Read",
    "container_cpu_usage_seconds_total", "container_memory_active_file",
    "container_memory_hierarchical_memory_limit", "container_memory_rss",
    "container_network_tcp_TimeWait", "cpu.busy", "mem.memused", "net.if.in.bytes",
]
TS_FORMAT = "%Y-%m-%d %H:%M:%S"
_FILE_RE = re.compile(r"^(?P<stem>container\d+)\.csv(\.gz)?$")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted((p for p in path.iterdir() if _FILE_RE.match(p.name)),
                      key=lambda p: int(re.sub(r"\D", "", _FILE_RE.match(p.name)["stem"])))
    return [path]


def sniff(path: Path) -> bool:
    """Return True when the first file's header is ``date`` followed by the 11 indicators."""
    files = _files(path)
    if not files:
        return False
    return c.header_fields(files[0]) == ["date", *INDICATORS]


def load_wide(path: str | Path) -> pd.DataFrame:
    """Read one container file as a wide frame for the forecasting protocol.

    Args:
        path: a ``container<n>.csv`` file (plain or gzipped).

    Returns:
        DataFrame indexed by ``date`` (``datetime64``, UTC-naive as published), one float64
        column per indicator in file order; ``attrs["source"]`` is the path.

    Raises:
        TraceFormatError: missing columns, unparsable/backward dates, empty or bad values.

    """
    f = Path(path)
    if f.is_dir():
        c.fail("load_wide reads one container file; pass container<n>.csv, not a folder", f)
    df = c.read_csv(f)
    df.columns = [str(x).strip() for x in df.columns]
    c.require_columns(df, ["date", *INDICATORS], f, "a Fisher container file (date + 11 "
                      "indicators)")
    ts = c.timestamps(df["date"], f, "date", TS_FORMAT)
    c.check_ordered(ts, f, "date", strict=True, raw=df["date"])
    values = c.numeric_matrix(df[INDICATORS], f)  # (T, 11)
    out = pd.DataFrame(values, columns=INDICATORS,
                       index=pd.DatetimeIndex(pd.to_datetime(ts, unit="s"), name="date"))
    out.attrs["source"] = str(f)
    return out


def load(path: Path) -> pd.DataFrame:
    """Read one container file or a folder of them as the canonical long frame."""
    files = _files(path)
    if not files:
        c.fail("no container<n>.csv files in this folder", path)
    order = sorted(INDICATORS)
    ents, mets, tss, vals = [], [], [], []
    for f in sorted(files, key=lambda p: _FILE_RE.match(p.name)["stem"]
                    if _FILE_RE.match(p.name) else p.name):
        w = load_wide(f)
        m = _FILE_RE.match(f.name)
        name = m["stem"] if m else f.name.split(".")[0]
        ts = w.index.to_numpy(dtype="datetime64[ns]").astype("int64") / 1e9
        n = len(ts)
        ents.append(np.full(n * len(order), name, dtype=object))
        mets.append(np.repeat(np.array(order, dtype=object), n))
        tss.append(np.tile(ts, len(order)))
        vals.append(w[order].to_numpy().T.ravel())  # (11*T,) indicator-major
    return c.finish(np.concatenate(ents), np.concatenate(mets), np.concatenate(tss),
                    np.concatenate(vals), source=path, format=NAME, step=600.0, kind="vm",
                    relative_time=False, presorted=True)
