r"""Bitbrains GWA-T-12 per-VM files (``Rnd``/``fastStorage``): ``<n>.csv`` or ``<n>.csv.gz``.

The separator is ``;`` followed by a TAB (``;\t``). Header: ``Timestamp [ms]`` (despite the
name, unix **seconds**), ``CPU cores``, ``CPU capacity provisioned [MHZ]``,
``CPU usage [MHZ]``, ``CPU usage [%]``, ``Memory capacity provisioned [KB]``,
``Memory usage [KB]``, ``Disk read throughput [KB/s]``, ``Disk write throughput [KB/s]``,
``Network received throughput [KB/s]``, ``Network transmitted throughput [KB/s]``.

``path`` is one file or a folder of them (every ``*.csv``/``*.csv.gz`` inside, one VM each).

Output (kind ``vm``, entity = file name without ``.csv[.gz]``, e.g. ``"17"``; unix time;
``step`` = the common sampling interval, 300 s, when every file read is regular — ≥ 90 % of
its gaps equal — else None: some VMs, e.g. ``2013-7/54``, carry extra interleaved samples,
so load the July folder with ``step=300`` for a regular grid):

* ``cpu_util`` = ``CPU usage [%]``;
* ``cpu_cores`` = usage MHz / (capacity MHz / cores): cores busy; 0 when the VM has 0
  cores or 0 capacity provisioned at that sample (powered-off periods in the trace);
* ``mem_bytes`` = ``Memory usage [KB]`` × 1024;
* ``disk_io`` = (read + write) KB/s × 1024, bytes/s;
* ``net_in`` / ``net_out`` = received / transmitted KB/s × 1024, bytes/s.

KB is taken as 1,024 bytes. ``attrs["static"][vm]`` holds the median over the file of
``cores``, ``cpu_capacity_mhz`` and ``mem_capacity_bytes``. Timestamps must not go back;
repeated timestamps (the published files 20 and 54 repeat powered-off samples) are averaged.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from traces.loaders import _common as c

NAME = "bitbrains"
TS = "Timestamp [ms]"
CORES = "CPU cores"
CAP = "CPU capacity provisioned [MHZ]"
USAGE_MHZ = "CPU usage [MHZ]"
USAGE_PCT = "CPU usage [%]"
MEM_CAP = "Memory capacity provisioned [KB]"
MEM = "Memory usage [KB]"
DISK_R = "Disk read throughput [KB/s]"
DISK_W = "Disk write throughput [KB/s]"
NET_RX = "Network received throughput [KB/s]"
NET_TX = "Network transmitted throughput [KB/s]"
HEADER = [TS, CORES, CAP, USAGE_MHZ, USAGE_PCT, MEM_CAP, MEM, DISK_R, DISK_W, NET_RX, NET_TX]
_FILE_RE = re.compile(r"^(?P<stem>.+?)\.csv(\.gz)?$")


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted((p for p in path.iterdir() if _FILE_RE.match(p.name) and p.is_file()),
                      key=lambda p: (len(p.name), p.name))
    return [path]


def sniff(path: Path) -> bool:
    """Return True when the first file's header starts with ``Timestamp [ms];``."""
    files = _files(path)
    if not files:
        return False
    head = c.head_lines(files[0], 1)
    return bool(head) and head[0].startswith(TS + ";")


def _read_one(f: Path) -> tuple[str, dict[str, np.ndarray], dict[str, float]]:
    # ';' with skipinitialspace drops the TAB after it and keeps the fast C parser
    # (sep=';\t' would need the slow python engine).
    df = c.read_csv(f, sep=";", skipinitialspace=True)
    df.columns = [str(x).strip() for x in df.columns]
    c.require_columns(df, HEADER, f, "a Bitbrains GWA-T-12 VM file (';\\t'-separated)")
    ts = c.numeric(df[TS], f, TS)
    c.check_ordered(ts, f, TS)
    v = {col: c.numeric(df[col], f, col) for col in HEADER[1:]}
    cores, cap = v[CORES], v[CAP]
    per_core = np.divide(cap, cores, out=np.zeros_like(cap), where=cores > 0)
    busy = np.divide(v[USAGE_MHZ], per_core, out=np.zeros_like(cap), where=per_core > 0)
    metrics = {
        "cpu_util": v[USAGE_PCT],
        "cpu_cores": busy,
        "mem_bytes": v[MEM] * 1024.0,
        "disk_io": (v[DISK_R] + v[DISK_W]) * 1024.0,
        "net_in": v[NET_RX] * 1024.0,
        "net_out": v[NET_TX] * 1024.0,
    }
    static = {"cores": float(np.median(cores)) if len(cores) else float("nan"),
              "cpu_capacity_mhz": float(np.median(cap)) if len(cap) else float("nan"),
              "mem_capacity_bytes": float(np.median(v[MEM_CAP]) * 1024.0)
              if len(cap) else float("nan")}
    name = _FILE_RE.match(f.name).group("stem")
    return name, {"ts": ts, **metrics}, static


def load(path: Path) -> pd.DataFrame:
    """Read one VM file or a folder of them (see module docstring)."""
    files = _files(path)
    if not files:
        c.fail("no *.csv or *.csv.gz Bitbrains VM files in this folder", path)
    read = sorted((_read_one(f) for f in files), key=lambda r: r[0])  # entity order
    ents, mets, tss, vals = [], [], [], []
    static: dict[str, dict[str, float]] = {}
    steps: list[float | None] = []
    for name, cols, st in read:
        static[name] = st
        ts = cols.pop("ts")
        if len(ts) > 1 and (np.diff(ts) == 0).any():
            ts, cols = _average_repeats(ts, cols)
        steps.append(_regular_step(ts))
        for metric in sorted(cols):
            v = cols[metric]
            ents.append(np.full(len(v), name, dtype=object))
            mets.append(np.full(len(v), metric, dtype=object))
            tss.append(ts)
            vals.append(v)
    step = steps[0] if steps and all(x is not None and x == steps[0] for x in steps) else None
    return c.finish(np.concatenate(ents), np.concatenate(mets), np.concatenate(tss),
                    np.concatenate(vals), source=path, format=NAME, step=step, kind="vm",
                    relative_time=False, static=static, presorted=True,
                    units={"disk_io": "bytes/s", "net_in": "bytes/s", "net_out": "bytes/s"})


def _average_repeats(
    ts: np.ndarray, cols: dict[str, np.ndarray]
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Average the samples that share a timestamp (ts is non-decreasing)."""
    uniq, inverse, counts = np.unique(ts, return_inverse=True, return_counts=True)
    return uniq, {k: np.bincount(inverse, weights=v) / counts for k, v in cols.items()}


def _regular_step(ts: np.ndarray) -> float | None:
    """Return the sampling interval when at least 90% of its gaps equal the median gap."""
    if len(ts) < 2:
        return None
    d = np.diff(ts)
    med = float(np.median(d))
    return med if np.mean(d == med) >= 0.9 else None
