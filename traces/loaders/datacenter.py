"""Datacenter-wide aggregates (A. Fernández, "DataCenter-Traces-Datasets", CC BY 4.0).

Three published shapes, recognised by their header:

* **Alibaba 2018** ``machine_usage_day_<d>_grouped_<s>_seconds.csv`` /
  ``machine_usage_days_1_to_8_grouped_<s>_seconds.csv``: ``cpu_util_percent,
  mem_util_percent, net_in, net_out, disk_io_percent`` — mean over all machines per bin.
  Metrics ``cpu_util``, ``mem_util``, ``disk_io`` (percent) and ``net_in``, ``net_out``
  (normalised 0–100); entity ``alibaba-2018-datacenter``.
* **Google 2019** ``instance_usage_grouped_300_seconds_month.csv``: ``avg_cpu, avg_mem,
  avg_assigned_mem, avg_cycles_per_instruction`` (normalised 0–1; metric names kept as
  published); entity ``google-2019-cell``.
* **Azure 2019 VMs** ``vm_cpu_readings_month_aggregated_cpu_mem.csv``: ``timestamp`` (s),
  ``cpu_usage`` (sum over VMs of core-weighted CPU usage), ``assigned_mem`` (sum) — names
  kept; entity ``azure-2019-vms``.

Alibaba and Google files have no time column: row *i* is bin *i*, so ts = offset + i·step
with step taken from ``grouped_<s>_seconds`` in the file name (300 s for Google) and, for a
single-day Alibaba file, offset = (day − 1)·86,400 s. The publisher appears to have dropped
empty bins (day 2 has 6,762 rows, not 8,640), so this implicit clock can drift across such
gaps; it is the only clock the files give. All times are relative (``relative_time``
True), kind ``vm``.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from traces.loaders import _common as c

NAME = "datacenter-aggregates"

_ALIBABA = ["cpu_util_percent", "mem_util_percent", "net_in", "net_out", "disk_io_percent"]
_ALIBABA_METRICS = {"cpu_util_percent": "cpu_util", "mem_util_percent": "mem_util",
                    "net_in": "net_in", "net_out": "net_out", "disk_io_percent": "disk_io"}
_GOOGLE = ["avg_cpu", "avg_mem", "avg_assigned_mem", "avg_cycles_per_instruction"]
_AZURE = ["timestamp", "cpu_usage", "assigned_mem"]


def _shape(header: list[str]) -> str | None:
    if header == _ALIBABA:
        return "alibaba"
    if header == _GOOGLE:
        return "google"
    if header == _AZURE:
        return "azure"
    return None


def sniff(path: Path) -> bool:
    """Return True for a file with one of the three published headers."""
    if path.is_dir():
        return False
    fields = c.header_fields(path)
    return bool(fields) and _shape(fields) is not None


def load(path: Path) -> pd.DataFrame:
    """Read one aggregate file (see module docstring)."""
    if path.is_dir():
        c.fail("pass one aggregate CSV file, not a folder", path)
    df = c.read_csv(path)
    shape = _shape([str(x).strip() for x in df.columns])
    if shape is None:
        c.fail("expected the header of an Alibaba 2018 (" + ",".join(_ALIBABA) + "), Google "
               "2019 (" + ",".join(_GOOGLE) + ") or Azure 2019 (" + ",".join(_AZURE) + ") "
               "aggregate file", path, 1)
    n = len(df)
    if shape == "azure":
        ts = c.numeric(df["timestamp"], path, "timestamp")
        c.check_ordered(ts, path, "timestamp", strict=True)
        step = float(np.median(np.diff(ts))) if n > 1 else None
        names = {"cpu_usage": "cpu_usage", "assigned_mem": "assigned_mem"}
        entity = "azure-2019-vms"
        units = {"cpu_usage": "sum over VMs of core-weighted CPU usage",
                 "assigned_mem": "sum over VMs of assigned memory (as published)"}
    else:
        m = re.search(r"grouped_(\d+)_seconds", path.name)
        step = float(m.group(1)) if m else (300.0 if shape == "google" else None)
        if step is None:
            c.fail("cannot tell the bin width: the Alibaba aggregate file name must keep its "
                   "'grouped_<seconds>_seconds' part", path)
        day = re.search(r"_day_(\d+)_", path.name)
        offset = (int(day.group(1)) - 1) * 86400.0 if day else 0.0
        ts = offset + np.arange(n) * step
        if shape == "alibaba":
            names, entity = _ALIBABA_METRICS, "alibaba-2018-datacenter"
            units = {"net_in": "normalised 0-100", "net_out": "normalised 0-100",
                     "disk_io": "percent"}
        else:
            names, entity = {k: k for k in _GOOGLE}, "google-2019-cell"
            units = {k: "normalised 0-1" for k in _GOOGLE}
            units["avg_cycles_per_instruction"] = "cycles per instruction"
    cols = list(names)
    values = c.numeric_matrix(df[cols], path)  # (T, M)
    metrics = np.array([names[k] for k in cols], dtype=object)
    return c.finish(
        entity, np.repeat(metrics, n), np.tile(ts, len(cols)), values.T.ravel(),
        source=path, format=NAME, step=step, kind="vm", relative_time=True,
        units=units,
    )
