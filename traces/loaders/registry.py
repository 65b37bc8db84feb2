"""Format registry, auto-detection and the :func:`load` entry point.

Each format module defines ``NAME``, ``sniff(path) -> bool`` (cheap: file names and the
first lines only) and ``load(path) -> DataFrame`` (the canonical long frame at the trace's
own resolution). :func:`load` detects the format when not named, then resamples on request.
"""

from __future__ import annotations

import importlib
import numbers
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from common.errors import InputError, TraceFormatError
from traces.loaders import _common

#: Format modules in detection order (most specific sniffers first).
_MODULES: tuple[str, ...] = (
    "traces.loaders.long",
    "traces.loaders.azure_llm",
    "traces.loaders.azure_functions",
    "traces.loaders.azure_functions_2021",
    "traces.loaders.alibaba2018",
    "traces.loaders.bitbrains",
    "traces.loaders.azure_vm",
    "traces.loaders.fisher",
    "traces.loaders.h100_power",
    "traces.loaders.alibaba_genai",
    "traces.loaders.datacenter",
)


def _modules() -> list:
    mods = []
    for name in _MODULES:
        try:
            mods.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:  # a format still being written
            if exc.name != name:
                raise
    return mods


#: Format name -> loader ``(path) -> canonical frame`` at the trace's own resolution.
FORMATS: dict[str, Callable[[Path], pd.DataFrame]] = {m.NAME: m.load for m in _modules()}
_SNIFFERS: dict[str, Callable[[Path], bool]] = {m.NAME: m.sniff for m in _modules()}


def detect_format(path: str | Path) -> str:
    """Name the format of ``path`` (a file or a folder) from file names and headers.

    Raises:
        TraceFormatError: nothing matched; the message lists the formats tried.

    """
    from traces import resolve

    p = resolve(path)
    for name, sniff in _SNIFFERS.items():
        try:
            if sniff(p):
                return name
        except TraceFormatError:
            continue  # unreadable as this format: try the next one
    raise TraceFormatError(
        "cannot tell the trace format from the file names or the header; tried "
        + ", ".join(_SNIFFERS)
        + ". Name it explicitly (`--format NAME` on the command line, format=NAME in Python)",
        str(p),
    )


def load(path: str | Path, format: str | None = None, step: float | None = None) -> pd.DataFrame:
    """Read a trace into the canonical long frame (see :mod:`traces.frame`).

    Args:
        path: a trace file or folder, as published (``.gz``/``.tar.gz`` read directly).
        format: one of :data:`FORMATS`; detected from names/headers when None.
        step: resample to this many seconds per bin (sums for counts, means for levels;
            see :func:`traces.loaders._common.resample`); None keeps the trace's own grid.

    Raises:
        TraceFormatError: the file does not match the format (message names file/row/column).
        InputError: unknown format name or invalid step.

    """
    from traces import resolve

    p = resolve(path)
    if step is not None and (
        isinstance(step, bool) or not isinstance(step, numbers.Real)
        or not np.isfinite(step) or step <= 0
    ):
        raise InputError(f"step must be a positive number of seconds, got {step!r}", "step")
    if format is None:
        format = detect_format(p)
    elif format not in FORMATS:
        raise InputError(f"unknown trace format {format!r}; known: {', '.join(FORMATS)}",
                         "format")
    frame = FORMATS[format](p)
    if step is not None:
        src = frame.attrs.get("step")
        aligned = (src is not None and float(step) == float(src) and len(frame)
                   and np.allclose(np.mod(frame["ts"].to_numpy(), float(step)), 0))
        if not aligned:
            frame = _common.resample(frame, step)
    return frame


def wide(frame: pd.DataFrame) -> pd.DataFrame:
    """Pivot a canonical frame to ``ts`` × (entity, metric) columns (NaN where no sample)."""
    out = frame.pivot_table(index="ts", columns=["entity", "metric"], values="value",
                            aggfunc="mean", sort=True)
    out.attrs = dict(frame.attrs)
    return out
