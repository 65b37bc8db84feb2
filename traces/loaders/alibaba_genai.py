r"""Alibaba GenAI serving trace 2026 (GenTD26, ``cluster-trace-v2026-GenAI``).

Two kinds of file, read as published:

* **metric tarballs** ``<name>.tar.gz``, each holding one CSV with ``timestamp_anon``
  (seconds, time-shifted — read as unix seconds, ``relative_time`` False), ``value``,
  ``container_ip`` (MD5 of the container IP) and, in ``qps``, ``request_type``. Entity =
  ``container_ip`` (kind ``server``); rows without one (empty/``None``/``NULL``) are the
  gateway's (``qps`` API requests, ``queue_size``) → entity ``gateway``, or, in per-pod
  files, ``unknown-container``. Metric per file:

  ============================== ====================================================
  file                           metric (unit)
  ============================== ====================================================
  qps                            ``qps`` (Generative Requests) / ``qps_api`` (API
                                 Requests); anonymised, trend-preserving scale
  queue_size_raw_anon            ``queue_size`` (tasks)
  queue_rt_raw_anon              ``queue_rt_ms``
  pod_gpu_duty_cycle_anon        ``gpu_util`` (percent)
  pod_gpu_memory_used_bytes_anon ``gpu_mem_bytes``
  pod_memory_util_anon           ``mem_util`` (percent)
  \*_latency_anon, \*_data_anon    ``<name>_ms`` (e.g. ``lora_update_latency_ms``)
  ============================== ====================================================

  Samples are ~57 s apart, irregular (``step`` None). Rows must be in time order (as
  published). Two samples of one container and metric at the same time are averaged.
  ``path`` is one tarball or a folder (every ``*.tar.gz`` in it; the request trace beside
  them is *not* included — load it by its own path).

* **request trace** ``lora_request_trace.csv``: one row per request, ``gmt_create``
  (``YYYY-MM-DD HH:MM:SS``, time-shifted, read as UTC) in order. Output like the Azure LLM
  trace: entity ``alibaba-genai-lora``, kind ``function``, per-request rows ``requests`` = 1
  and ``exec_time_s`` = ``exec_time_seconds``; with a step, requests are summed per bin
  (0 for empty bins) and ``exec_time_s`` averaged.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from traces.loaders import _common as c

NAME = "alibaba-genai-2026"
_TAR_RE = re.compile(r"^(?P<stem>.+)\.tar\.gz$")
_METRIC = {
    "queue_size_raw_anon": "queue_size",
    "queue_rt_raw_anon": "queue_rt_ms",
    "pod_gpu_duty_cycle_anon": "gpu_util",
    "pod_gpu_memory_used_bytes_anon": "gpu_mem_bytes",
    "pod_memory_util_anon": "mem_util",
}
_GATEWAY_FILES = {"qps", "queue_size_raw_anon"}
_MISSING_IP = {"", "None", "NULL", "none", "null", "nan", "NaN"}
REQUEST_COLUMNS = ["gmt_create", "exec_time_seconds"]


def metric_name(stem: str) -> str:
    """Metric name for a tarball stem (see the module table)."""
    if stem in _METRIC:
        return _METRIC[stem]
    base = re.sub(r"_(anon|raw)$", "", stem)
    base = re.sub(r"_data$", "", base)
    return base + "_ms"


def _tarballs(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.iterdir() if _TAR_RE.match(p.name))
    return [path]


def sniff(path: Path) -> bool:
    """Return True for the request trace, or tarballs of timestamp_anon/value/container_ip CSVs."""
    if path.is_file() and path.name.startswith("lora_request_trace"):
        head = c.head_lines(path, 1)
        return bool(head) and head[0].startswith("gmt_create,")
    files = _tarballs(path)
    if not files or not _TAR_RE.match(files[0].name):
        return False
    return {"timestamp_anon", "value", "container_ip"} <= set(c.header_fields(files[0]))


def load(path: Path) -> pd.DataFrame:
    """Read the request trace, one metric tarball, or a folder of tarballs."""
    if path.is_file() and not _TAR_RE.match(path.name):
        return load_requests(path)
    files = _tarballs(path)
    if not files:
        c.fail("no GenAI metric tarballs (*.tar.gz) in this folder", path)
    ents, mets, tss, vals = [], [], [], []
    for f in files:
        e, m, t, v = _read_metric(f)
        ents.append(e)
        mets.append(m)
        tss.append(t)
        vals.append(v)
    frame = c.finish(np.concatenate(ents), np.concatenate(mets), np.concatenate(tss),
                     np.concatenate(vals), source=path, format=NAME, step=None, kind="server",
                     relative_time=False,
                     units={"qps": "anonymised requests per second", "qps_api":
                            "anonymised requests per second", "queue_size": "tasks",
                            "mem_util": "percent", "gpu_mem_bytes": "bytes"})
    return _average_duplicates(frame)


def _read_metric(f: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    stem = _TAR_RE.match(f.name)["stem"] if _TAR_RE.match(f.name) else f.name.split(".")[0]
    df = c.read_csv(f, dtype={"container_ip": str}, keep_default_na=False)
    df.columns = [str(x).strip() for x in df.columns]
    c.require_columns(df, ["timestamp_anon", "value", "container_ip"], f,
                      "a GenAI metric file (timestamp_anon, value, container_ip)")
    ts = c.numeric(df["timestamp_anon"], f, "timestamp_anon")
    c.check_ordered(ts, f, "timestamp_anon")
    value = c.numeric(df["value"], f, "value")
    ip = df["container_ip"].astype(str).str.strip()
    missing = ip.isin(_MISSING_IP).to_numpy()
    default = "gateway" if stem in _GATEWAY_FILES else "unknown-container"
    entity = np.where(missing, default, ip.to_numpy(dtype=object)).astype(object)
    if "request_type" in df.columns:
        rt = df["request_type"].astype(str).str.strip()
        known = rt.isin(["Generative Requests", "API Requests"]).to_numpy()
        if not known.all():
            i = int(np.argmax(~known))
            c.fail(f"expected 'Generative Requests' or 'API Requests', found {rt.iloc[i]!r}",
                   f, i + 2, "request_type")
        metric = np.where(rt.to_numpy() == "API Requests", "qps_api", "qps").astype(object)
    else:
        metric = np.full(len(ts), metric_name(stem), dtype=object)
    return entity, metric, ts, value


def _average_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    if not frame[["entity", "metric", "ts"]].duplicated().any():
        return frame
    attrs = dict(frame.attrs)
    out = frame.groupby(["entity", "metric", "ts"], sort=True, as_index=False)["value"].mean()
    out.attrs = attrs
    return out


def load_requests(path: Path) -> pd.DataFrame:
    """Read ``lora_request_trace.csv`` as per-request rows (see module docstring)."""
    df = c.read_csv(path, dtype={"gmt_create": str}, keep_default_na=False, na_values=[""])
    df.columns = [str(x).strip() for x in df.columns]
    c.require_columns(df, REQUEST_COLUMNS, path, "the GenAI request trace (gmt_create, "
                      "exec_time_seconds, …)")
    ts = c.timestamps(df["gmt_create"], path, "gmt_create", "%Y-%m-%d %H:%M:%S")
    c.check_ordered(ts, path, "gmt_create", raw=df["gmt_create"])
    exec_s = c.numeric(df["exec_time_seconds"], path, "exec_time_seconds")
    n = len(ts)
    metric = np.repeat(np.array(["exec_time_s", "requests"], dtype=object), n)
    return c.finish("alibaba-genai-lora", metric, np.tile(ts, 2),
                    np.concatenate([exec_s, np.ones(n)]), source=path, format=NAME,
                    step=None, kind="function", relative_time=False, presorted=True,
                    units={"exec_time_s": "seconds (mean over the requests of a step)"})
