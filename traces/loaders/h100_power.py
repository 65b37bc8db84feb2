"""nvidia-smi CSV logs of an 8-GPU node (``power-trace_<date>.csv[.gz]``).

Header ``timestamp, power.draw [W], utilization.gpu [%], memory.used [MiB]``; values carry
their unit (``69.32 W``, ``0 %``, ``132 MiB``), which is stripped and checked. There is no
GPU index column: the log writes one row per GPU per sampling instant, GPU 0 … 7 in order,
so row *i* (0-based, below the header) belongs to GPU *i* mod 8 and the row count must be a
multiple of the GPU count (8). (GPU 0's row is often logged ~0.1 s apart from the other
seven of its instant, so grouping by timestamp would split instants; position does not.)

``timestamp`` is ``YYYY/MM/DD HH:MM:SS.mmm`` in the node's local time zone, which the log
does not record; it is read as UTC. Timestamps must not go back.

Output (kind ``server``, entities ``gpu0`` … ``gpu7``, each row at its own timestamp,
``step`` None — about 0.08–0.1 s apart, irregular): ``power_w`` (W), ``gpu_util`` (percent),
``gpu_mem_bytes`` (MiB × 1,048,576). ``path`` is one log or a folder of logs (each log's
GPUs are then named ``<file stem>/gpu<i>``).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from traces.loaders import _common as c

NAME = "h100-power"
GPUS = 8
TS_FORMAT = "%Y/%m/%d %H:%M:%S.%f"
_COLUMNS = {  # column -> (metric, unit suffix, scale)
    "power.draw [W]": ("power_w", "W", 1.0),
    "utilization.gpu [%]": ("gpu_util", "%", 1.0),
    "memory.used [MiB]": ("gpu_mem_bytes", "MiB", 1024.0 * 1024.0),
}
_FILE_RE = re.compile(r"^(?P<stem>.+)\.csv(\.gz)?$")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if _FILE_RE.match(p.name) and sniff(p))
    return [path]


def sniff(path: Path) -> bool:
    """Return True for a log with nvidia-smi's timestamp/power/utilisation/memory header."""
    if path.is_dir():
        return bool(_files(path))
    return c.header_fields(path) == ["timestamp", *_COLUMNS]


def _read_one(f: Path, prefix: str) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    df = c.read_csv(f, skipinitialspace=True, dtype=str, keep_default_na=False)
    df.columns = [str(x).strip() for x in df.columns]
    c.require_columns(df, ["timestamp", *_COLUMNS], f, "an nvidia-smi power log")
    n = len(df)
    if n % GPUS:
        c.fail(f"expected one row per GPU per instant ({GPUS} GPUs), but {n} data rows is not "
               f"a multiple of {GPUS}; the log is truncated or from a node with another GPU "
               "count", f, n + 1)
    ts = c.timestamps(df["timestamp"], f, "timestamp", TS_FORMAT)
    c.check_ordered(ts, f, "timestamp", raw=df["timestamp"])
    values = {}
    for col, (metric, unit, scale) in _COLUMNS.items():
        values[metric] = c.numeric(df[col], f, col, unit=unit) * scale
    names = [f"{prefix}gpu{i}" for i in range(GPUS)]
    return names, ts, values


def load(path: Path) -> pd.DataFrame:
    """Read one log, or every log in a folder (see module docstring)."""
    files = _files(path)
    if not files:
        c.fail("no nvidia-smi power logs (*.csv / *.csv.gz with the nvidia-smi header) here",
               path)
    ents, mets, tss, vals = [], [], [], []
    for f in files:
        prefix = f"{_FILE_RE.match(f.name)['stem']}/" if path.is_dir() else ""
        names, ts, values = _read_one(f, prefix)
        gpu = np.arange(len(ts)) % GPUS
        for metric, v in values.items():
            ents.append(np.array(names, dtype=object)[gpu])
            mets.append(np.full(len(v), metric, dtype=object))
            tss.append(ts)
            vals.append(v)
    return c.finish(np.concatenate(ents), np.concatenate(mets), np.concatenate(tss),
                    np.concatenate(vals), source=path, format=NAME, step=None, kind="server",
                    relative_time=False, units={"gpu_mem_bytes": "bytes"},
                    extra_attrs={"timezone": "unknown (node local time, read as UTC)"})
