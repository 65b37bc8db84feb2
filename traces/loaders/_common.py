"""Shared machinery of the trace loaders: error mapping, validation, frame building, resampling.

Every loader reads its files through :func:`read_csv`, checks numbers with :func:`numeric`
and builds its result with :func:`finish`, so all formats fail the same way (a
:class:`~common.errors.TraceFormatError` naming file, row and column) and yield the same
canonical long frame (see :mod:`traces.frame`).

Row numbers in messages are 1-based *line numbers of the file* (the header, when there is
one, is line 1), so ``sed -n 17p file`` shows the offending line.
"""

from __future__ import annotations

import gzip
import io
import numbers
import re
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from common.errors import InputError, TraceFormatError
from traces.frame import COLUMNS, METRICS

#: Metrics whose values are counts per step: resampling sums them and fills empty bins with 0.
#: Every other metric is a level (utilisation, power, bytes in use): resampling averages it.
SUM_METRICS = frozenset({"requests", "tokens_in", "tokens_out", "invocations", "cold_starts"})
#: Metrics that are maxima within a step: resampling takes the max.
MAX_METRICS = frozenset({"cpu_util_max"})


class SharedDict(dict):
    """A dict that pandas' attrs propagation shares instead of deep-copying.

    pandas deep-copies ``frame.attrs`` on nearly every operation (filtering, ``head``, each
    group of a ``groupby``). A per-entity ``static`` table of hundreds of functions made
    that cost ~30 ms per operation (iterating the 670 groups of the 1340 day: 15.7 s instead
    of 0.4 s). Per-entity attrs are therefore held in this dict, which ``copy.deepcopy``
    returns as is: treat it as read-only, or copy it (``dict(...)``) before changing it.
    """

    def __deepcopy__(self, memo: dict) -> SharedDict:
        return self


def aggregation(metric: str) -> str:
    """Return how :func:`resample` combines samples of ``metric``: ``sum``, ``max`` or ``mean``."""
    if metric in SUM_METRICS:
        return "sum"
    if metric in MAX_METRICS:
        return "max"
    return "mean"


def where(path: str | Path, row: int | None = None, column: str | None = None) -> str:
    """Format a location for error messages: ``"file.csv row 17, column value"``."""
    text = str(path)
    if row is not None:
        text += f" row {row}"
    if column is not None:
        text += ("," if row is not None else "") + f" column {column!r}"
    return text


def fail(message: str, path: str | Path, row: int | None = None, column: str | None = None):
    """Raise a :class:`TraceFormatError` located at ``path``/``row``/``column``."""
    raise TraceFormatError(message, where(path, row, column))


def open_text(path: Path) -> io.TextIOBase:
    """Open a plain, ``.gz`` or single-member ``.tar``/``.tar.gz`` file as text."""
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        tar = tarfile.open(path)
        members = [m for m in tar.getmembers() if m.isfile()]
        if len(members) != 1:
            fail(f"expected a tar archive holding exactly one CSV, found {len(members)} files",
                 path)
        return io.TextIOWrapper(tar.extractfile(members[0]), encoding="utf-8", newline="")
    if name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def head_lines(path: Path, n: int = 2) -> list[str]:
    """Return the first ``n`` lines of a (possibly compressed) text file, without newlines.

    Raises:
        TraceFormatError: the file cannot be opened or decoded.

    """
    try:
        with open_text(path) as fh:
            out = []
            for _ in range(n):
                line = fh.readline()
                if not line:
                    break
                out.append(line.rstrip("\r\n"))
            return out
    except TraceFormatError:
        raise
    except (OSError, EOFError, UnicodeDecodeError, tarfile.TarError) as exc:
        fail(f"cannot read the file ({type(exc).__name__}: {exc})", path)


def header_fields(path: Path, sep: str = ",") -> list[str]:
    """Return the fields of a file's first line, stripped (empty for an empty file).

    Raises:
        TraceFormatError: the file cannot be opened or decoded.

    """
    head = head_lines(path, 1)
    return [h.strip() for h in head[0].split(sep)] if head else []


def compression_of(path: Path) -> str | None:
    """Pandas ``compression`` argument for ``path`` (``tar`` covers ``.tar.gz``)."""
    name = path.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return "tar"
    if name.endswith(".gz"):
        return "gzip"
    return None


_LINE_RE = re.compile(r"line (\d+)")


def read_csv(path: Path, **kwargs: Any) -> pd.DataFrame:
    """``pandas.read_csv`` with every parser failure turned into a located TraceFormatError.

    Args:
        path: the file (plain, gzip or tar; compression inferred from the name).
        **kwargs: passed to :func:`pandas.read_csv`.

    """
    kwargs.setdefault("compression", compression_of(path))
    try:
        return pd.read_csv(path, **kwargs)
    except FileNotFoundError:
        fail("no such file", path)
    except pd.errors.EmptyDataError:
        fail("the file is empty", path)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError, OSError, EOFError,
            tarfile.TarError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        m = _LINE_RE.search(msg)
        row = int(m.group(1)) if m else None
        fail(f"cannot parse as CSV ({msg})", path, row)


def require_columns(df: pd.DataFrame, columns: Sequence[str], path: Path, what: str) -> None:
    """Fail unless every name in ``columns`` is a column of ``df``."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        found = ", ".join(map(str, list(df.columns)[:12]))
        more = " …" if len(df.columns) > 12 else ""
        fail(f"missing column(s) {missing} expected in {what}; the header has: {found}{more}",
             path, 1 if what else None)


def numeric(
    values: pd.Series | np.ndarray,
    path: Path,
    column: str,
    first_line: int = 2,
    *,
    allow_nan: bool = False,
    unit: str | None = None,
) -> np.ndarray:
    """Parse a column as float64, failing on the first unparsable (or, unless allowed, empty) cell.

    Args:
        values: the raw column, one entry per data row, in file order.
        path: file name for messages.
        column: column name for messages.
        first_line: 1-based file line of the first entry (2 below a header).
        allow_nan: keep empty cells as NaN instead of failing (only where the format
            documents missing values).
        unit: a unit suffix that may follow the number (``"W"``, ``"%"``, ``"MiB"``); stripped.

    Returns:
        float64 array of the same length.

    """
    s = pd.Series(values)
    if s.dtype.kind in "fiub":
        out = s.to_numpy(dtype="float64")
        raw_null = np.isnan(out)
    else:
        raw = s.astype("string")
        raw_null = raw.isna().to_numpy() | (raw.str.strip() == "").fillna(True).to_numpy()
        text = raw
        if unit is not None:
            text = raw.str.strip().str.removesuffix(unit)
        out = pd.to_numeric(text.str.strip(), errors="coerce").to_numpy(dtype="float64")
        bad = np.isnan(out) & ~raw_null
        # the literal "nan" parses to NaN and would look like a bad cell; treat it as empty
        literal_nan = raw.str.strip().str.lower().isin(["nan"]).fillna(False).to_numpy()
        bad &= ~literal_nan
        raw_null |= literal_nan
        if bad.any():
            i = int(np.argmax(bad))
            expected = f"a number followed by {unit!r}" if unit else "a number"
            fail(f"expected {expected}, found {str(s.iloc[i]).strip()!r}", path, first_line + i,
                 column)
    if np.isinf(out).any():
        i = int(np.argmax(np.isinf(out)))
        fail(f"expected a finite number, found {s.iloc[i]!r}", path, first_line + i, column)
    if not allow_nan and raw_null.any():
        i = int(np.argmax(raw_null))
        fail("expected a number, found an empty cell (missing values are not allowed here)",
             path, first_line + i, column)
    return out


def timestamps(
    values: pd.Series,
    path: Path,
    column: str,
    fmt: str,
    first_line: int = 2,
    *,
    expected: str | None = None,
) -> np.ndarray:
    """Parse date-times to float unix seconds; fail on the first bad one.

    Times without an offset are taken as UTC; times with one are converted to UTC.

    Args:
        values: the column as written.
        path: file name for messages.
        column: column name for messages.
        fmt: a strptime format, or ``"ISO8601"`` (any ISO-8601 date-time, fraction optional).
        first_line: 1-based file line of the first value.
        expected: how to describe a good value in messages (defaults to ``fmt``).

    """
    raw = pd.Series(values).astype("string")
    parsed = pd.to_datetime(raw.str.strip(), format=fmt, errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        fail(f"expected a timestamp like {expected or fmt!r}, found {raw.iloc[i]!r}", path,
             first_line + i, column)
    ns = parsed.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]").astype("int64")
    return ns.astype("float64") / 1e9


def check_ordered(
    ts: np.ndarray,
    path: Path,
    column: str,
    first_line: int = 2,
    *,
    strict: bool = False,
    raw: pd.Series | None = None,
) -> None:
    """Fail at the first row whose time is earlier than (or, if strict, equal to) the previous.

    Args:
        ts: parsed times in file order.
        path: file name for messages.
        column: column name for messages.
        first_line: 1-based file line of ``ts[0]``.
        strict: also reject repeated times.
        raw: the column as written, shown in the message instead of the parsed seconds.

    """
    if len(ts) < 2:
        return
    d = np.diff(ts)
    bad = d <= 0 if strict else d < 0
    if bad.any():
        i = int(np.argmax(bad)) + 1
        if raw is not None:
            now, before = str(raw.iloc[i]), str(raw.iloc[i - 1])
        else:
            now, before = f"{float(ts[i]):.15g}", f"{float(ts[i - 1]):.15g}"
        verb = "increase strictly" if strict else "not go back"
        fail(f"timestamps must {verb}; {now!r} follows {before!r} on the line before", path,
             first_line + i, column)


def finish(
    entity: np.ndarray | Sequence[str],
    metric: np.ndarray | Sequence[str],
    ts: np.ndarray,
    value: np.ndarray,
    *,
    source: Path | str,
    format: str,
    step: float | None,
    kind: str,
    relative_time: bool,
    static: dict[str, dict[str, float]] | None = None,
    units: dict[str, str] | None = None,
    presorted: bool = False,
    extra_attrs: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Build the canonical long frame: drop NaN values, sort, set the documented attrs.

    NaN values are dropped here (never kept in a frame): loaders only pass NaN for cells
    their format documents as missing, having rejected undocumented ones already.

    Args:
        entity: entity id per row (or one id for all rows).
        metric: metric name per row (or one name for all rows).
        ts: seconds per row (unix, or relative when ``relative_time``).
        value: values per row; NaN rows are dropped.
        source: the path read, for ``attrs["source"]``.
        format: the loader's format name.
        step: seconds between samples, None when irregular.
        kind: ``vm``, ``function`` or ``server``.
        relative_time: ts counts from the trace's own origin, not the unix epoch.
        static: entity -> {attribute: value} constants.
        units: metric -> unit, overriding :data:`traces.frame.METRICS` for this trace.
        presorted: rows are already ordered by (entity, metric, ts); skip the sort.
        extra_attrs: further documented attrs of the format.

    """
    entity = np.asarray(entity, dtype=object)
    metric = np.asarray(metric, dtype=object)
    ts = np.asarray(ts, dtype="float64")
    value = np.asarray(value, dtype="float64")
    n = len(ts)
    if entity.shape == ():
        entity = np.full(n, entity.item(), dtype=object)
    if metric.shape == ():
        metric = np.full(n, metric.item(), dtype=object)
    keep = np.isfinite(value)
    if not keep.all():
        entity, metric, ts, value = entity[keep], metric[keep], ts[keep], value[keep]
    if not presorted and len(ts):
        e_codes, _ = pd.factorize(entity, sort=True)
        m_codes, _ = pd.factorize(metric, sort=True)
        order = np.lexsort((ts, m_codes, e_codes))
        entity, metric, ts, value = entity[order], metric[order], ts[order], value[order]
    frame = pd.DataFrame(
        {
            "entity": pd.array(entity, dtype=object),
            "metric": pd.array(metric, dtype=object),
            "ts": ts,
            "value": value,
        },
        columns=list(COLUMNS),
    )
    frame["entity"] = frame["entity"].astype(str)
    frame["metric"] = frame["metric"].astype(str)
    present = sorted(pd.unique(frame["metric"])) if len(frame) else []
    unit_map = {m: METRICS.get(m, "as in the source") for m in present}
    unit_map.update({k: v for k, v in (units or {}).items() if k in unit_map})
    frame.attrs.update(
        {
            "source": str(source),
            "format": format,
            "step": None if step is None else float(step),
            "kind": kind,
            "units": unit_map,
            "relative_time": bool(relative_time),
            "static": SharedDict(static or {}),
        }
    )
    if extra_attrs:
        frame.attrs.update(extra_attrs)
    return frame


def resample(frame: pd.DataFrame, step: float) -> pd.DataFrame:
    """Resample a canonical frame onto a regular grid of ``step`` seconds.

    Bins are aligned to multiples of ``step`` (from the unix epoch, or from the origin of
    a relative-time trace) and labelled by their start. Per metric (see :func:`aggregation`):

    * counts (``requests``, ``tokens_*``, ``invocations``, ``cold_starts``) are **summed**, and
      every bin between a series' first and last sample is present (0 when nothing happened);
    * maxima (``cpu_util_max``) take the **max** of the samples in the bin;
    * levels (utilisation, power, bytes, and any metric not listed) are **averaged**; bins
      with no sample are left out (a gap stays a gap) — except when upsampling a regular
      trace (``step`` finer than ``frame.attrs["step"]``), where each sample's value is held
      over the bins of its own source interval.

    Upsampling counts spreads each source interval's count evenly over the bins it covers,
    so totals are preserved (values become fractional).

    Args:
        frame: a canonical long frame.
        step: bin width in seconds (> 0).

    Returns:
        a new canonical frame with ``attrs["step"] = step``.

    """
    if isinstance(step, bool) or not isinstance(step, numbers.Real) or not (
        np.isfinite(step) and step > 0
    ):
        raise InputError(f"step must be a positive number of seconds, got {step!r}", "step")
    step = float(step)
    src_step = frame.attrs.get("step")
    attrs = dict(frame.attrs)
    if frame.empty:
        out = frame.copy()
        out.attrs.update(attrs, step=step)
        return out
    if src_step and step < float(src_step) - 1e-9:
        frame = _upsample(frame, float(src_step), step)
    pieces = []
    for metric, part in frame.groupby("metric", sort=True):
        how = aggregation(str(metric))
        b = np.floor(part["ts"].to_numpy() / step + 1e-9) * step
        g = pd.DataFrame({"entity": part["entity"].to_numpy(), "bin": b,
                          "value": part["value"].to_numpy()})
        agg = g.groupby(["entity", "bin"], sort=True)["value"].agg(how).reset_index()
        if how == "sum":
            agg = _fill_zero_bins(agg, step)
        agg.insert(1, "metric", metric)
        pieces.append(agg.rename(columns={"bin": "ts"}))
    out = pd.concat(pieces, ignore_index=True)
    return finish(out["entity"].to_numpy(), out["metric"].to_numpy(), out["ts"].to_numpy(),
                  out["value"].to_numpy(), source=attrs.get("source", ""),
                  format=attrs.get("format", ""), step=step, kind=attrs.get("kind", ""),
                  relative_time=attrs.get("relative_time", False), static=attrs.get("static"),
                  units=attrs.get("units"),
                  extra_attrs={k: v for k, v in attrs.items()
                               if k not in {"source", "format", "step", "kind", "units",
                                            "relative_time", "static"}})


def _fill_zero_bins(agg: pd.DataFrame, step: float) -> pd.DataFrame:
    """Insert 0 for every missing bin between each entity's first and last bin."""
    idx = np.rint(agg["bin"].to_numpy() / step).astype("int64")
    ent = agg["entity"].to_numpy()
    starts = np.r_[0, np.flatnonzero(ent[1:] != ent[:-1]) + 1]
    ends = np.r_[starts[1:], len(ent)]
    lo, hi = idx[starts], idx[ends - 1]
    lengths = hi - lo + 1
    if lengths.sum() == len(idx):
        return agg  # already dense
    full_ent = np.repeat(ent[starts], lengths)
    offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    full_idx = np.repeat(lo, lengths) + offsets
    values = np.zeros(len(full_idx))
    # position of each existing bin inside the dense grid
    counts = ends - starts
    pos = np.repeat(np.cumsum(lengths) - lengths, counts) + (idx - np.repeat(lo, counts))
    values[pos] = agg["value"].to_numpy()
    return pd.DataFrame({"entity": full_ent, "bin": full_idx * step, "value": values})


def _upsample(frame: pd.DataFrame, src_step: float, step: float) -> pd.DataFrame:
    """Expand each sample of a regular trace over the finer bins of its source interval."""
    k = int(np.ceil(src_step / step - 1e-9))  # fine bins per source interval
    n = len(frame)
    ts = frame["ts"].to_numpy()
    rep_ts = np.repeat(ts, k) + np.tile(np.arange(k) * step, n)  # (n*k,)
    value = frame["value"].to_numpy()
    metric = frame["metric"].to_numpy()
    is_sum = np.isin(metric, list(SUM_METRICS))
    per = np.where(is_sum, value / k, value)
    return pd.DataFrame({
        "entity": np.repeat(frame["entity"].to_numpy(), k),
        "metric": np.repeat(metric, k),
        "ts": rep_ts,
        "value": np.repeat(per, k),
    })


def numeric_matrix(
    block: pd.DataFrame, path: Path, first_line: int = 2, *, allow_nan: bool = False
) -> np.ndarray:
    """Parse a block of columns as a float64 matrix ``(rows, columns)``.

    Columns pandas already read as numbers are taken as they are (fast path); any other
    column is checked cell by cell with :func:`numeric`, so the error names the first bad
    cell (smallest row, then leftmost column).
    """
    out = np.empty(block.shape, dtype="float64")
    first_bad: tuple[int, int, TraceFormatError] | None = None
    for j, col in enumerate(block.columns):
        s = block[col]
        if s.dtype.kind in "iub" or (s.dtype.kind == "f" and allow_nan):
            out[:, j] = s.to_numpy(dtype="float64")
            continue
        try:
            out[:, j] = numeric(s, path, str(col), first_line, allow_nan=allow_nan)
        except TraceFormatError as exc:
            row = _row_of(exc)
            if first_bad is None or row < first_bad[0]:
                first_bad = (row, j, exc)
    if first_bad is not None:
        raise first_bad[2]
    return out


def _row_of(exc: TraceFormatError) -> int:
    m = re.search(r" row (\d+)", exc.where or "")
    return int(m.group(1)) if m else 0


def check_unique(keys: pd.Series, path: Path, column: str, first_line: int = 2) -> None:
    """Fail at the first repeated key (an entity listed twice)."""
    dup = keys.duplicated().to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        fail(f"{keys.iloc[i]!r} appears twice; each entity must have one row", path,
             first_line + i, column)
