"""Azure Functions trace 2019 ("Serverless in the Wild"): per-function per-minute invocations.

Two published layouts are read as they are:

* **triple** (In-Vitro ``1340/``): ``<p>_inv.csv`` (``HashFunction,HashOwner,HashApp,1_minute …
  1440_minute``), ``<p>_run.csv`` (durations) and ``<p>_mem.csv`` (memory);
* **500 layout** (In-Vitro ``500/``): ``invocations.csv`` (``HashOwner,HashApp,HashFunction,
  Trigger,480 … 959``), ``durations.csv`` and ``memory.csv``.

Any of them may be gzipped (``.csv.gz``). ``path`` is the folder or any file of the set.

Time axis (``relative_time`` = True, seconds from the start of the trace day, step 60 s):
``N_minute`` columns count minutes from 1 (``1_minute`` is 00:00–00:01, ts = (N−1)·60), and
so do the bare ``1`` … ``1440`` columns of the original Azure day files; other bare integer
columns are minute-of-day from 0 (In-Vitro's 500 layout: ``480`` is 08:00–08:01, ts = N·60,
per its SOURCE.md) — so the 500 layout starts at ts = 28,800 s.

Output: entity = ``HashFunction``, metric ``invocations`` (count per minute, every minute of
the file including zeros), kind ``function``. Per-function constants go to
``attrs["static"][function]``: ``duration_ms`` (``Average``), ``duration_count``,
``duration_min_ms``, ``duration_max_ms``, ``duration_p{0,1,25,50,75,99,100}_ms``, ``memory_mb``
(``AverageAllocatedMb``), ``memory_sample_count``, ``memory_p{1,…,100}_mb``, plus the strings
``app``, ``owner`` and (500 layout) ``trigger``. They are not emitted as rows. Memory files
keyed by app only (``1340_mem.csv`` has no ``HashFunction``) give each function its app's
value. A function absent from the duration or memory file simply lacks those keys; a
missing duration/memory *file* is allowed (its keys are then absent for all functions).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from traces.loaders import _common as c

NAME = "azure-functions-2019"
STEP_S = 60.0

_SUFFIXES = (".csv", ".csv.gz")
_TRIPLE_RE = re.compile(r"^(?P<p>.+)_(?P<k>inv|run|mem)\.csv(\.gz)?$")
_LAYOUT500 = {"inv": "invocations", "run": "durations", "mem": "memory"}
_ID_COLUMNS = ("HashOwner", "HashApp", "HashFunction")


def _find(folder: Path, stem: str) -> Path | None:
    for suffix in _SUFFIXES:
        p = folder / f"{stem}{suffix}"
        if p.is_file():
            return p
    return None


def resolve(path: Path) -> dict[str, Path | None]:
    """Find the invocation, duration and memory files for a folder or one file of the set."""
    folder = path if path.is_dir() else path.parent
    if path.is_file():
        m = _TRIPLE_RE.match(path.name)
        if m:
            p = m.group("p")
            return {k: _find(folder, f"{p}_{k}") for k in ("inv", "run", "mem")}
        for stem in _LAYOUT500.values():
            if path.name in (stem + ".csv", stem + ".csv.gz"):
                return {kk: _find(folder, s) for kk, s in _LAYOUT500.items()}
        return {"inv": path, "run": None, "mem": None}
    invs = sorted(p for p in folder.iterdir() if _TRIPLE_RE.match(p.name)
                  and _TRIPLE_RE.match(p.name).group("k") == "inv")
    if len(invs) == 1:
        return resolve(invs[0])
    if len(invs) > 1:
        c.fail(f"the folder holds several invocation files ({', '.join(p.name for p in invs)});"
               " pass one of them", folder)
    if _find(folder, "invocations") is not None:
        return {k: _find(folder, s) for k, s in _LAYOUT500.items()}
    c.fail("no Azure Functions 2019 invocation file (*_inv.csv or invocations.csv) here",
           folder)


def sniff(path: Path) -> bool:
    """Return True for a folder or file of either layout whose invocation header looks right."""
    try:
        files = resolve(path)
    except c.TraceFormatError:
        return False
    inv = files["inv"]
    if inv is None:
        return False
    cols = c.header_fields(inv)
    return "HashFunction" in cols and any(re.fullmatch(r"\d+(_minute)?", x) for x in cols[3:6])


def _minute_columns(columns: list[str], path: Path) -> tuple[list[str], np.ndarray]:
    """Return the minute columns and their start times (seconds from the day's start)."""
    names, labels, suffixed = [], [], []
    for col in columns:
        m = re.fullmatch(r"(\d+)(_minute)?", str(col).strip())
        if m is None:
            continue
        names.append(col)
        labels.append(int(m.group(1)))
        suffixed.append(m.group(2) is not None)
    if not names:
        c.fail("expected per-minute columns named like '1_minute' or '480'; found none", path, 1)
    # "N_minute" (In-Vitro) and the original Azure day files' bare "1" … "1440" count from 1;
    # other bare labels (In-Vitro's 500 layout, 480 … 959) are minute-of-day from 0.
    one_based = all(suffixed) or max(labels) == 1440
    ts = (np.asarray(labels, dtype="float64") - (1.0 if one_based else 0.0)) * STEP_S
    steps = np.diff(ts)
    if (steps != STEP_S).any():
        i = int(np.argmax(steps != STEP_S)) + 1
        c.fail(f"minute columns must be consecutive and increasing; {names[i]!r} follows "
               f"{names[i - 1]!r}", path, 1, names[i])
    return names, ts


def load(path: Path) -> pd.DataFrame:
    """Read either layout (see module docstring) into the canonical frame."""
    files = resolve(path)
    inv = files["inv"]
    df = c.read_csv(inv)
    c.require_columns(df, ["HashFunction"], inv, "an Azure Functions 2019 invocation file")
    names, minute_ts = _minute_columns([str(x) for x in df.columns], inv)
    fn = df["HashFunction"].astype(str)
    c.check_unique(fn, inv, "HashFunction")
    counts = c.numeric_matrix(df[names], inv)  # (F, T)
    if (counts < 0).any():
        r, j = np.argwhere(counts < 0)[0]
        c.fail(f"expected an invocation count >= 0, found {counts[r, j]:g}", inv, int(r) + 2,
               names[j])

    static: dict[str, dict] = {f: {} for f in fn}
    for col, key in (("HashApp", "app"), ("HashOwner", "owner"), ("Trigger", "trigger")):
        if col in df.columns:
            for f, v in zip(fn, df[col].astype(str), strict=True):
                static[f][key] = v
    if files["run"] is not None:
        _merge_durations(files["run"], static)
    if files["mem"] is not None:
        _merge_memory(files["mem"], static)

    order = np.argsort(fn.to_numpy(dtype=object), kind="stable")
    entities = fn.to_numpy(dtype=object)[order]
    n_f, n_t = counts.shape
    return c.finish(
        np.repeat(entities, n_t), "invocations", np.tile(minute_ts, n_f),
        counts[order].ravel(),  # (F*T,) entity-major, time-minor
        source=path, format=NAME, step=STEP_S, kind="function", relative_time=True,
        static=static, presorted=True,
        extra_attrs={"files": {k: (str(v) if v else None) for k, v in files.items()}},
    )


def _merge_durations(path: Path, static: dict[str, dict]) -> None:
    df = c.read_csv(path)
    c.require_columns(df, ["HashFunction", "Average"], path, "an Azure Functions duration file")
    c.check_unique(df["HashFunction"].astype(str), path, "HashFunction")
    cols = {"Average": "duration_ms", "Count": "duration_count", "Minimum": "duration_min_ms",
            "Maximum": "duration_max_ms"}
    for col in df.columns:
        m = re.fullmatch(r"percentile_Average_(\d+)", str(col))
        if m:
            cols[col] = f"duration_p{m.group(1)}_ms"
    _merge(df, path, "HashFunction", cols, static, by_app=False)


def _merge_memory(path: Path, static: dict[str, dict]) -> None:
    df = c.read_csv(path)
    key = "HashFunction" if "HashFunction" in df.columns else "HashApp"
    c.require_columns(df, [key, "AverageAllocatedMb"], path, "an Azure Functions memory file")
    c.check_unique(df[key].astype(str), path, key)
    cols = {"AverageAllocatedMb": "memory_mb", "SampleCount": "memory_sample_count"}
    for col in df.columns:
        m = re.fullmatch(r"AverageAllocatedMb_pct(\d+)", str(col))
        if m:
            cols[col] = f"memory_p{m.group(1)}_mb"
    _merge(df, path, key, cols, static, by_app=key == "HashApp")


def _merge(df: pd.DataFrame, path: Path, key: str, cols: dict[str, str],
           static: dict[str, dict], *, by_app: bool) -> None:
    present = {col: name for col, name in cols.items() if col in df.columns}
    values = {name: c.numeric(df[col], path, col) for col, name in present.items()}
    keys = df[key].astype(str).to_numpy()
    row_of = {k: i for i, k in enumerate(keys)}
    for f, attrs in static.items():
        i = row_of.get(attrs.get("app") if by_app else f)
        if i is None:
            continue
        for name, arr in values.items():
            attrs[name] = float(arr[i])
