"""Wall time of ``tidewise evaluate`` under thread settings (default vs. capped).

Usage:
    .venv/bin/python bench/cli_threads.py --data alibaba-datacenter-10s --context 72 \
        --models quantile-gbm --env '' --env OMP_NUM_THREADS=1 --env TIDEWISE_THREADS=2

Each ``--env`` is a space-separated list of ``NAME=VALUE`` set for one run (``''``: the
environment as it is, with the thread variables below removed, so the run gets the
command's own default). For each, the script runs the CLI in a fresh process (thread
pools are fixed at process start), prints the wall time of the whole command and each
model's ``fit_seconds`` from ``report.json``, plus ``uptime``'s load at the start: on a
shared machine these figures move with the load, so compare rows of one invocation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TIDEWISE_THREADS")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="alibaba-datacenter-10s")
    ap.add_argument("--context", type=int, default=72)
    ap.add_argument("--models", default="quantile-gbm")
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE ... for one run")
    ap.add_argument("--extra", default="", help="more CLI arguments, space-separated")
    args = ap.parse_args()
    for spec in args.env or [""]:
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
        env["PYTHONPATH"] = str(ROOT)
        for item in spec.split():
            k, v = item.split("=", 1)
            env[k] = v
        load = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as out:
            cmd = [sys.executable, "-m", "service.cli", "evaluate", "--data", args.data,
                   "--context", str(args.context), "--models", args.models, "--out", out,
                   "--no-progress", *args.extra.split()]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
            wall = time.perf_counter() - t0
            if proc.returncode != 0:
                print(f"[{spec or 'default'}] failed ({proc.returncode}): {proc.stderr[-400:]}")
                continue
            rep = json.loads((Path(out) / "report.json").read_text())
        fits = ", ".join(f"{m} fit {e['fit_seconds_mean']:.1f} s"
                         for m, e in rep["models"].items())
        print(f"[{spec or 'default'}] load {load:.2f}: wall {wall:.1f} s ({fits})", flush=True)


if __name__ == "__main__":
    main()
