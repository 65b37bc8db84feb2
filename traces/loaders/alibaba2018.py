"""Alibaba cluster-trace-v2018 ``machine_usage.csv`` (no header), per machine.

Columns in file order (``cluster-trace-v2018/schema.txt``): ``machine_id, time_stamp (s),
cpu_util_percent, mem_util_percent, mem_gps, mkpi, net_in, net_out, disk_io_percent``.

Output (kind ``server``, entity = machine_id, ``relative_time`` True: the trace counts
seconds from its own origin; ``step`` None — samples sit on an irregular 10 s grid, use
``step=`` to resample):

* ``cpu_util``, ``mem_util`` (percent), ``net_in``, ``net_out`` (normalised 0–100),
  ``disk_io`` (percent) — all required in every row;
* ``mem_gps`` (normalised memory bandwidth) and ``mkpi`` (cache misses per kilo-instruction)
  — empty in most rows of the published trace; empty cells are simply absent samples;
* ``disk_io`` values -1 and 101 are the schema's "abnormal" markers: those samples are
  dropped (counted in ``attrs["dropped"]["disk_io"]``).

Rows of one machine must not go back in time (the published file is ordered by machine,
then time); two samples of one machine at the same second are averaged.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from traces.loaders import _common as c

NAME = "alibaba-2018"
COLUMNS = ["machine_id", "time_stamp", "cpu_util_percent", "mem_util_percent", "mem_gps",
           "mkpi", "net_in", "net_out", "disk_io_percent"]
_METRICS = {"cpu_util_percent": "cpu_util", "mem_util_percent": "mem_util",
            "mem_gps": "mem_gps", "mkpi": "mkpi", "net_in": "net_in", "net_out": "net_out",
            "disk_io_percent": "disk_io"}
_OPTIONAL = {"mem_gps", "mkpi"}
_NAME_RE = re.compile(r"machine_usage.*\.csv(\.gz)?$")


def _file(path: Path) -> Path | None:
    if path.is_dir():
        hits = sorted(p for p in path.iterdir() if _NAME_RE.match(p.name))
        return hits[0] if len(hits) == 1 else None
    return path


def sniff(path: Path) -> bool:
    """Return True for a headerless 9-field file (or a folder holding one) of ``m_<n>`` rows."""
    f = _file(path)
    if f is None:
        return False
    head = c.head_lines(f, 1)
    if not head:
        return False
    fields = head[0].split(",")
    return len(fields) == 9 and re.fullmatch(r"m_\d+", fields[0].strip()) is not None


def load(path: Path) -> pd.DataFrame:
    """Read ``machine_usage.csv`` (a file, or a folder holding exactly one)."""
    f = _file(path)
    if f is None:
        c.fail("expected one machine_usage*.csv file in the folder", path)
    df = c.read_csv(f, header=None, names=COLUMNS, dtype={"machine_id": str},
                    keep_default_na=False, na_values=[""], index_col=False)
    if df.shape[1] != 9:  # pragma: no cover - names= forces 9 columns
        c.fail("expected 9 columns", f)
    first_line = 1  # no header
    mid = df["machine_id"]
    empty = mid.isna().to_numpy()
    if empty.any():
        c.fail("expected a machine id, found an empty cell", f,
               int(np.argmax(empty)) + first_line, "machine_id")
    ts = c.numeric(df["time_stamp"], f, "time_stamp", first_line)
    machine = mid.astype(str).to_numpy(dtype=object)
    same = machine[1:] == machine[:-1]
    back = same & (np.diff(ts) < 0)
    if back.any():
        i = int(np.argmax(back)) + 1
        c.fail(f"time_stamp goes back in time for machine {machine[i]!r}: {ts[i]:g} follows "
               f"{ts[i - 1]:g}", f, i + first_line, "time_stamp")
    dropped: dict[str, int] = {}
    ents, mets, tss, vals = [], [], [], []
    for col, metric in _METRICS.items():
        v = c.numeric(df[col], f, col, first_line, allow_nan=col in _OPTIONAL)
        if col == "disk_io_percent":
            abnormal = (v == -1) | (v == 101)
            dropped["disk_io"] = int(abnormal.sum())
            v = np.where(abnormal, np.nan, v)
        ents.append(machine)
        mets.append(np.full(len(v), metric, dtype=object))
        tss.append(ts)
        vals.append(v)
    frame = c.finish(np.concatenate(ents), np.concatenate(mets), np.concatenate(tss),
                     np.concatenate(vals), source=f, format=NAME, step=None, kind="server",
                     relative_time=True,
                     units={"net_in": "normalised 0-100", "net_out": "normalised 0-100",
                            "disk_io": "percent", "mem_gps": "normalised memory bandwidth",
                            "mkpi": "cache misses per kilo-instruction"},
                     extra_attrs={"dropped": dropped})
    return _average_duplicates(frame)


def _average_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Average samples of one (machine, metric) at the same second, keeping attrs."""
    key = frame[["entity", "metric", "ts"]]
    if not key.duplicated().any():
        return frame
    attrs = dict(frame.attrs)
    out = frame.groupby(["entity", "metric", "ts"], sort=True, as_index=False)["value"].mean()
    out.attrs = attrs
    return out
