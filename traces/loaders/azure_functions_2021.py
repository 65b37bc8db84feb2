"""Azure Functions invocation trace 2021: one row per invocation.

Columns ``app``, ``func`` (hashes), ``end_timestamp`` (seconds from the trace start, float)
and ``duration`` (seconds). An invocation starts at ``end_timestamp − duration``; rows are
not in start order in the published excerpts, so they are sorted, not checked.

Output (kind ``function``, entity = ``func``, ``relative_time`` True, ``step`` None): one row
per invocation at its start time with ``invocations`` = 1 and ``duration_ms`` = duration ×
1000. With a step, invocations are summed per bin (0 in empty bins) and ``duration_ms``
averaged over the invocations that started in the bin. ``attrs["static"][func]`` holds
``app``, ``duration_ms`` (mean over the file) and ``invocations`` (count).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from traces.loaders import _common as c

NAME = "azure-functions-2021"
HEADER = ["app", "func", "end_timestamp", "duration"]


def sniff(path: Path) -> bool:
    """Return True for a file whose header is ``app,func,end_timestamp,duration``."""
    if path.is_dir():
        return False
    return c.header_fields(path) == HEADER


def load(path: Path) -> pd.DataFrame:
    """Read one per-invocation file (see module docstring)."""
    if path.is_dir():
        c.fail("pass one Azure Functions 2021 CSV file, not a folder", path)
    df = c.read_csv(path, dtype={"app": str, "func": str}, keep_default_na=False,
                    na_values=[""])
    df.columns = [str(x).strip() for x in df.columns]
    c.require_columns(df, HEADER, path, "an Azure Functions 2021 invocation file")
    for col in ("app", "func"):
        empty = df[col].isna().to_numpy()
        if empty.any():
            c.fail(f"expected a {col} hash, found an empty cell", path,
                   int(np.argmax(empty)) + 2, col)
    end = c.numeric(df["end_timestamp"], path, "end_timestamp")
    dur = c.numeric(df["duration"], path, "duration")
    if (dur < 0).any():
        i = int(np.argmax(dur < 0))
        c.fail(f"expected a duration >= 0 s, found {dur[i]:g}", path, i + 2, "duration")
    start = end - dur
    func = df["func"].astype(str).to_numpy(dtype=object)
    per = pd.DataFrame({"func": func, "app": df["app"].astype(str).to_numpy(dtype=object),
                        "d": dur * 1000.0})
    stats = per.groupby("func", sort=True).agg(app=("app", "first"), duration_ms=("d", "mean"),
                                               invocations=("d", "size"))
    static = {
        str(f): {"app": str(app), "duration_ms": float(d), "invocations": float(k)}
        for f, app, d, k in zip(stats.index, stats["app"], stats["duration_ms"],
                                stats["invocations"], strict=True)
    }
    n = len(start)
    return c.finish(
        np.concatenate([func, func]),
        np.repeat(np.array(["duration_ms", "invocations"], dtype=object), n),
        np.concatenate([start, start]), np.concatenate([dur * 1000.0, np.ones(n)]),
        source=path, format=NAME, step=None, kind="function", relative_time=True,
        static=static,
        units={"duration_ms": "milliseconds (mean over the invocations of a step)"},
    )

