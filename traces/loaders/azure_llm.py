"""Azure LLM inference trace 2023 (Splitwise): one row per request.

Columns ``TIMESTAMP`` (``YYYY-MM-DD HH:MM:SS.fffffff``, read as UTC), ``ContextTokens``,
``GeneratedTokens``. The file is ordered by time; a row earlier than its predecessor is
rejected.

Output (kind ``function``, one entity named after the file: ``AzureLLMInferenceTrace_code.csv``
→ ``azure-llm-code``):

* without a step: per-request rows at the request time — ``requests`` = 1,
  ``tokens_in`` = ContextTokens, ``tokens_out`` = GeneratedTokens (``attrs["step"]`` None);
* with a step: per bin sums of the same (bins with no request are present with 0).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from traces.loaders import _common as c

NAME = "azure-llm-2023"
HEADER = ["TIMESTAMP", "ContextTokens", "GeneratedTokens"]
TS_FORMAT = "ISO8601"  # "2023-11-16 18:17:03.9799600"; a missing fraction is accepted


def entity_name(path: Path) -> str:
    """Name the entity: ``AzureLLMInferenceTrace_code.csv(.gz)`` → ``azure-llm-code``."""
    m = re.match(r"AzureLLMInferenceTrace_(\w+?)(?:_\d+)?\.csv", path.name, re.IGNORECASE)
    if m:
        return f"azure-llm-{m.group(1).lower()}"
    stem = path.name.split(".")[0]
    return stem if stem.startswith("azure-llm") else f"azure-llm-{stem}"


def sniff(path: Path) -> bool:
    """Return True for a file whose header is the LLM trace header."""
    if path.is_dir():
        return False
    return c.header_fields(path) == HEADER


def load(path: Path) -> pd.DataFrame:
    """Read one LLM trace file as per-request rows (see module docstring)."""
    df = c.read_csv(path, dtype=str, keep_default_na=False)
    c.require_columns(df, HEADER, path, "an Azure LLM 2023 trace (TIMESTAMP, ContextTokens, "
                      "GeneratedTokens)")
    ts = c.timestamps(df["TIMESTAMP"], path, "TIMESTAMP", TS_FORMAT,
                      expected="YYYY-MM-DD HH:MM:SS.fffffff")
    c.check_ordered(ts, path, "TIMESTAMP", raw=df["TIMESTAMP"])
    tin = c.numeric(df["ContextTokens"], path, "ContextTokens")
    tout = c.numeric(df["GeneratedTokens"], path, "GeneratedTokens")
    for name, arr in (("ContextTokens", tin), ("GeneratedTokens", tout)):
        if (arr < 0).any():
            i = int(np.argmax(arr < 0))
            c.fail(f"expected a token count >= 0, found {arr[i]:g}", path, i + 2, name)
    n = len(ts)
    # rows ordered metric by metric; each block is already time-ordered
    metric = np.repeat(np.array(["requests", "tokens_in", "tokens_out"], dtype=object), n)
    return c.finish(
        entity_name(path), metric, np.tile(ts, 3), np.concatenate([np.ones(n), tin, tout]),
        source=path, format=NAME, step=None, kind="function", relative_time=False,
        presorted=True,
    )
