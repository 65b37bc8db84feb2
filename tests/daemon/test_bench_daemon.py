"""Smoke test of ``bench/daemon.py``: a tiny run against a real ``tidewise serve``.

It checks what the bench reads and reports, not how fast anything is: the runs it read from
the daemon's log forecast every series with the model and decided every target, the feeder's
samples were stored, and the recommendations were answered.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # starts a daemon (torch imports) and a feeder process: ~30 s at load 13
def test_a_tiny_bench_run_reads_every_forecast_run_of_the_daemon(tmp_path):
    out = subprocess.run(
        [sys.executable, "bench/daemon.py", "--entities", "3", "--metrics", "2",
         "--targets", "2", "--duration", "4", "--period", "1", "--history-s", "600",
         "--rec-rate", "5", "--log-dir", str(tmp_path / "logs")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    res = json.loads(out.stdout.rsplit("RESULT ", 1)[1])
    assert (res["series"], res["targets"]) == (6, 2)
    assert res["runs_seen"] >= 1, out.stdout
    # the daemon's first run is left out when others follow (if it ended in the window)
    measured = res["runs_measured"]
    assert res["runs_seen"] - 1 <= measured <= res["runs_seen"]
    # 600 s of history = 40 buckets: enough context for the model, so no fallback
    assert res["forecasts"] == 6 * measured and res["fallbacks"] == 0
    assert res["model_share"] == 1.0 and res["errors"] == 0
    assert res["ingest_errors"] == 0 and res["ingest_samples_per_s"] > 0
    assert res["rec_errors"] == 0 and res["rec_p99_ms"] > 0
    assert res["job_failures"] == 0
    assert "keeps up:" in out.stdout and "load before:" in out.stdout
    # the ceiling: the measured machine CPU per 1,000 series, and the series all cores hold
    per_k = res["cores"]["machine"] / (res["series"] / 1000)
    assert res["cores_per_1000_series"] == pytest.approx(per_k)
    assert res["series_at_all_cores"] == int(os.cpu_count() / per_k * 1000)
    assert f"{res['series_at_all_cores']:,} series" in out.stdout
    # --log-dir keeps the daemon's whole log, debug lines (each run's) included
    kept = (tmp_path / "logs" / "daemon-0.log").read_text()
    assert kept.count("forecast refresh: 6 series") >= res["runs_seen"]
