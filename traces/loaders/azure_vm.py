"""Azure Public Dataset V1 (2017 VM trace) CPU matrices as converted from DataCenterSim.

Files ``microsoft_avg_<n>.csv[.gz]`` and ``microsoft_max_<n>.csv[.gz]``: a ``step`` column
(1, 2, … consecutive 5-minute steps) and one column per VM (names as published, e.g.
``1633748``), CPU utilisation in percent, no missing values.

``path`` is one matrix, or a folder holding an avg and/or a max matrix (both are read).

Output (kind ``vm``, entity = VM column name, step 300 s, ``relative_time`` True with
ts = (step − 1) · 300 s: the files keep no absolute time):

* ``cpu_util`` from the avg matrix (mean within each 5 minutes);
* ``cpu_util_max`` from the max matrix (maximum within each 5 minutes; resampling takes
  the max of it).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from traces.loaders import _common as c

NAME = "azure-vm-2017"
STEP_S = 300.0
_FILE_RE = re.compile(r"^microsoft_(?P<kind>avg|max)_\d+\.csv(\.gz)?$")
_METRIC = {"avg": "cpu_util", "max": "cpu_util_max"}


def _files(path: Path) -> list[tuple[str, Path]]:
    if path.is_dir():
        out = []
        for p in sorted(path.iterdir()):
            m = _FILE_RE.match(p.name)
            if m:
                out.append((m.group("kind"), p))
        return out
    m = _FILE_RE.match(path.name)
    return [(m.group("kind") if m else "avg", path)]


def sniff(path: Path) -> bool:
    """Return True for ``microsoft_{avg,max}_<n>.csv[.gz]`` (or their folder) with a step column."""
    files = _files(path)
    if not files or (path.is_file() and not _FILE_RE.match(path.name)):
        return False
    head = c.head_lines(files[0][1], 1)
    return bool(head) and head[0].split(",")[0].strip().strip('"') == "step"


def load(path: Path) -> pd.DataFrame:
    """Read one matrix or a folder's avg/max pair (see module docstring)."""
    files = _files(path)
    if not files:
        c.fail("no microsoft_avg_<n>.csv[.gz] / microsoft_max_<n>.csv[.gz] files here", path)
    kinds = [k for k, _ in files]
    if len(set(kinds)) != len(kinds):
        c.fail("the folder holds several matrices of the same kind; pass one file", path)
    parts = []
    for kind, f in files:
        df = c.read_csv(f)
        df.columns = [str(x).strip() for x in df.columns]
        c.require_columns(df, ["step"], f, "an Azure VM 2017 CPU matrix (step, <vm>, …)")
        steps = c.numeric(df["step"], f, "step")
        d = np.diff(steps)
        if (d != 1).any():
            i = int(np.argmax(d != 1)) + 1
            c.fail(f"expected consecutive steps; {steps[i]:g} follows {steps[i - 1]:g}", f,
                   i + 2, "step")
        vms = [col for col in df.columns if col != "step"]
        if not vms:
            c.fail("expected one column per VM after 'step'; found none", f, 1)
        values = c.numeric_matrix(df[vms], f)  # (T, V)
        ts = (steps - 1.0) * STEP_S
        parts.append((_METRIC[kind], vms, ts, values))
    ents, mets, tss, vals = [], [], [], []
    for metric, vms, ts, values in parts:
        n_t = len(ts)
        ents.append(np.repeat(np.array(vms, dtype=object), n_t))
        mets.append(np.full(n_t * len(vms), metric, dtype=object))
        tss.append(np.tile(ts, len(vms)))
        vals.append(values.T.ravel())  # (V*T,) VM-major
    return c.finish(np.concatenate(ents), np.concatenate(mets), np.concatenate(tss),
                    np.concatenate(vals), source=path, format=NAME, step=STEP_S, kind="vm",
                    relative_time=True, units={"cpu_util_max": "percent"})
