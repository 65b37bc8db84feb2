"""Inspect traces: ``python -m traces.loaders PATH... [--format NAME] [--step SECONDS]``.

Prints one Markdown table row per path: detected format, rows, entities, metrics, time
span, step and the wall time of :func:`traces.load` (the figure quoted in docs/traces.md).
A bad trace prints its located error message (no traceback) and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
import time

from common.errors import TidewiseError


def main(argv: list[str] | None = None) -> int:
    """Load each path and print its summary row; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m traces.loaders", description=__doc__)
    parser.add_argument("paths", nargs="+", help="trace files or folders, as published")
    parser.add_argument("--format", default=None, help="format name (detected when omitted)")
    parser.add_argument("--step", type=float, default=None, help="resample to SECONDS")
    args = parser.parse_args(argv)

    import traces
    import traces.loaders.registry  # noqa: F401 - import cost stays out of the timings

    print("| path | format | step (s) | rows | entities | metrics | span (s) | load (s) |")
    print("|---|---|---|---|---|---|---|---|")
    status = 0
    for path in args.paths:
        start = time.perf_counter()
        try:
            frame = traces.load(path, format=args.format, step=args.step)
        except TidewiseError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 2
            continue
        seconds = time.perf_counter() - start
        span = float(frame["ts"].max() - frame["ts"].min()) if len(frame) else 0.0
        step = frame.attrs.get("step")
        print(f"| `{path}` | {frame.attrs['format']} | {step if step is not None else '-'} "
              f"| {len(frame):,} | {frame['entity'].nunique()} | {frame['metric'].nunique()} "
              f"| {span:,.0f} | {seconds:.2f} |")
    return status


if __name__ == "__main__":
    sys.exit(main())
