"""``tidewise backtest``: a target's own stored history through its policy and the peers.

What an operator asks before trusting a policy: what would it have done on my last week,
against what I run today? The target's series are read from the store (the raw samples in
buckets of ``TIDEWISE_FORECAST_STEP_S`` while the range is within the raw retention, else
the per-minute rollups), turned into the canonical frame the trace loaders produce, and
handed to :func:`traces.replay.core.run_replay` with the scenario options that describe the
target (capacity, bounds, boot time and the daemon's decision period for scaling; duration
and memory for a function; budget, nameplate, idle power, priorities and delay for a row).
The output is that of ``tidewise replay``: ``report.json``, ``config.json``, the timeline and
the plots.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer

from common.errors import InputError, NoDataError

#: The peers each scenario is compared with when ``--policies`` is not given.
PEERS = {
    "vm": ("hpa", "kpa", "oracle"),
    "serverless": ("keepalive-10m", "hybrid-histogram", "oracle"),
    "power": ("polca", "static-peak", "oracle"),
}
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> int:
    """Parse ``7d``, ``36h``, ``90m``, ``600s`` or plain seconds into seconds.

    Raises:
        InputError: anything else, or a span under a minute.

    """
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", str(text))
    if not m:
        raise InputError(f"expected a span such as 7d, 36h, 90m or 600s, got {text!r}",
                         where="--since")
    seconds = int(float(m.group(1)) * _UNITS[m.group(2) or "s"])
    if seconds < 60:
        raise InputError(f"a backtest needs at least a minute of history, got {text!r}",
                         where="--since")
    return seconds


def _points(session: Any, entity: str, metric: str, start: int, end: int, step: int,  # noqa: ANN401
            agg: str) -> tuple[np.ndarray, np.ndarray]:
    from service.store import samples as sample_store
    from service.store.errors import NotFoundError

    try:
        res = sample_store.query_series(session, entity, metric, start, end - 1, step, agg)
    except NotFoundError as exc:
        raise NoDataError(f"no history to backtest: {exc}") from None
    pts = [(t, v) for t, v in res.points if v is not None and np.isfinite(v)]
    if not pts:
        raise NoDataError(f"{entity}/{metric} has no samples between {start} and {end}")
    ts, vals = zip(*pts, strict=True)
    return np.asarray(ts, dtype=np.float64), np.asarray(vals, dtype=np.float64)


def _sourced_points(store: Any, target: Any, start: int, end: int, step: int  # noqa: ANN401
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Read the buckets of a target's ``source`` over ``[start, end)`` (gaps left out)."""
    from service.forecasting import History

    sp = target.spec
    end -= end % step
    ts, v = History.of(store, [target]).buckets(sp["entity"], sp["metric"], end, step,
                                                max(1, (end - start) // step))
    ok = np.isfinite(v)
    if not ok.any():
        raise NoDataError(f"{sp['entity']}/{sp['metric']}: its source has no value between "
                          f"{start} and {end}")
    return ts[ok].astype(np.float64), v[ok]


def target_frame(store: Any, target: Any, start: int, end: int) -> tuple[pd.DataFrame, dict]:  # noqa: ANN401
    """Read ``target``'s series over ``[start, end)`` as a canonical frame plus scenario options.

    Raises:
        NoDataError: the target's series hold no samples in the range.

    """
    s = store.settings
    sp = target.spec
    raw_ok = end - start <= s.raw_retention_s
    step = int(s.forecast_step_s) if raw_ok else 60
    parts: list[pd.DataFrame] = []
    with store.sessions() as session:
        if target.kind == "vm":
            if sp.get("source"):  # history read from the target's Prometheus-compatible API
                ts, v = _sourced_points(store, target, start, end, int(s.forecast_step_s))
            else:
                ts, v = _points(session, sp["entity"], sp["metric"], start, end, step, "mean")
            parts.append(pd.DataFrame({"entity": sp["entity"], "metric": sp["metric"],
                                       "ts": ts, "value": v}))
            options: dict[str, Any] = {
                "metric": sp["metric"], "capacity": float(sp["capacity"]),
                "min_replicas": int(sp["min_replicas"]), "max_replicas": int(sp["max_replicas"]),
                "boot_s": float(sp["boot_s"]), "sync_s": float(s.forecast_interval_s),
            }
            static = {}
        elif target.kind == "serverless":
            step = 60
            ts, v = _points(session, sp["entity"], sp["metric"], start, end, step, "sum")
            grid = np.arange(ts[0], ts[-1] + 1, step)  # minutes without a sample: none ran
            counts = np.zeros(len(grid))
            counts[((ts - ts[0]) // step).astype(np.int64)] = v
            parts.append(pd.DataFrame({"entity": sp["entity"], "metric": "invocations",
                                       "ts": grid, "value": np.round(counts)}))
            options = {}
            static = {sp["entity"]: {"duration_ms": float(sp["duration_ms"]),
                                     "memory_mb": float(sp["memory_mb"])}}
        else:  # power
            found = 0
            for name in sp["servers"]:
                try:
                    ts, v = _points(session, name, sp["metric"], start, end, step, "mean")
                except NoDataError:
                    continue  # a server without samples is left out of the row
                found += 1
                parts.append(pd.DataFrame({"entity": name, "metric": "power_w", "ts": ts,
                                           "value": v}))
            if not found:
                raise NoDataError(f"none of the row's servers has {sp['metric']!r} samples "
                                  f"between {start} and {end}")
            low = [x for x, p in sp.get("priorities", {}).items() if p == "low"]
            options = {"metric": "power_w", "budget_w": float(sp["budget_w"]),
                       "p_max_w": float(sp["p_max_w"]), "p_idle_w": float(sp["p_idle_w"]),
                       "delay_s": float(sp["delay_s"]), "servers": found, "align": "time",
                       "low_priority": low}
            static = {}
    frame = pd.concat(parts, ignore_index=True)
    frame.attrs.update(step=float(step), source=f"target {target.name!r} (store)",
                       kind={"vm": "vm", "serverless": "function", "power": "server"}[target.kind],
                       static=static)
    return frame, options


def run_backtest(store: Any, name: str, since_s: int, policies: list[str] | None,  # noqa: ANN401
                 out_dir: Path | None, now: int | None = None, progress: bool = False,
                 ) -> dict[str, Any]:
    """Replay target ``name``'s last ``since_s`` seconds through its policy and the peers.

    Raises:
        NotFoundError: no such target.
        NoDataError: no history in the range.
        InputError: an unknown policy.

    """
    from service.store import targets as target_store
    from traces.replay.core import run_replay

    with store.sessions() as session:
        target = target_store.get_target(session, name)
    end = int(time.time()) if now is None else int(now)
    end -= end % int(store.settings.forecast_step_s)
    frame, options = target_frame(store, target, end - since_s, end)
    chosen = list(policies) if policies else [target.policy, *PEERS[target.kind]]
    chosen = list(dict.fromkeys(chosen))  # the target's own policy once
    for key, value in (target.params or {}).items():
        options[f"{target.policy}.{key}"] = value
    report = run_replay(frame, target.kind, chosen, out_dir=out_dir, options=options,
                        progress=progress)
    report["backtest"] = {"target": target.name, "kind": target.kind, "policy": target.policy,
                          "start": end - since_s, "end": end, "step_s": frame.attrs["step"]}
    if out_dir is not None:
        import json

        (Path(out_dir) / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return report


def backtest(
    target: Annotated[str, typer.Option("--target", help="A declared target's name.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (report.json, plots).")],
    since: Annotated[str, typer.Option("--since", help="History to replay: 7d, 36h, 90m.")] = "7d",
    policies: Annotated[
        str | None,
        typer.Option("--policies", help="Comma-separated policies (default: the target's and "
                     "the scenario's peers)."),
    ] = None,
    db_url: Annotated[
        str | None, typer.Option("--db-url", help="Store URL (default TIDEWISE_DB_URL).")
    ] = None,
) -> None:
    """Replay a target's stored history through its policy and the peers (report as replay)."""
    from service.config import load_settings
    from service.training import open_store

    seconds = parse_since(since)
    names = [p.strip() for p in policies.split(",") if p.strip()] if policies else None
    settings = load_settings(**({"db_url": db_url} if db_url else {}))
    store = open_store(settings)
    try:
        report = run_backtest(store, target, seconds, names, out)
    finally:
        store.close()
    from traces.cli import summary_lines

    for line in summary_lines(report, sweep=False):
        typer.echo(line)
    typer.echo(f"wrote {out / 'report.json'}")


def register(app: typer.Typer) -> None:
    """Add ``backtest`` to ``app``."""
    app.command("backtest")(backtest)
