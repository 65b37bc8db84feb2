"""The canonical long frame every trace loader yields.

Columns (in this order):
    entity  (str)     an entity id: a VM, function, server, container or service
    metric  (str)     a metric name from :data:`METRICS` (or another documented name)
    ts      (float64) unix seconds; traces without absolute time count from a documented
                      origin and set ``frame.attrs["relative_time"] = True``
    value   (float64) finite

``frame.attrs`` carries: ``source`` (path), ``format`` (loader name), ``step`` (seconds
between samples, or None when irregular), ``kind`` (``vm``, ``function`` or ``server``),
``units`` (metric -> unit), ``relative_time`` (bool), and ``static`` (entity -> {attr: value}
for per-entity constants such as a function's mean duration or memory).
Rows are sorted by (entity, metric, ts).
"""

from __future__ import annotations

COLUMNS = ("entity", "metric", "ts", "value")

#: Metric names and their units, shared by loaders, the store and the replay.
METRICS: dict[str, str] = {
    "cpu_util": "percent",
    "cpu_cores": "cores",
    "mem_util": "percent",
    "mem_bytes": "bytes",
    "net_in": "bytes/s (or normalized 0-100 where the trace is)",
    "net_out": "bytes/s (or normalized 0-100 where the trace is)",
    "disk_io": "percent or bytes/s, per trace",
    "power_w": "watts",
    "gpu_util": "percent",
    "gpu_mem_bytes": "bytes",
    "requests": "requests per step",
    "tokens_in": "tokens per step",
    "tokens_out": "tokens per step",
    "invocations": "invocations per step",
    "concurrency": "instances",
    "cold_starts": "count per step",
    "duration_ms": "milliseconds",
    "memory_mb": "megabytes",
    "cpu_util_max": "percent (maximum within the step)",
    "exec_time_s": "seconds",
}
