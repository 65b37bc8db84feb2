"""common.threads: the CLI's thread-pool defaults and their overrides."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.threads import apply_thread_defaults, default_threads, resolve_threads

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("cores", "n"), [(1, 1), (2, 1), (4, 2), (8, 4), (64, 4)])
def test_default_is_half_the_cores_between_one_and_four(cores, n):
    assert default_threads(cores) == n
    assert resolve_threads({}, cores=cores) == (n, "default")


def test_omp_num_threads_wins_over_tidewise_threads():
    assert resolve_threads({"OMP_NUM_THREADS": "3", "TIDEWISE_THREADS": "2"}, 8) == (
        3, "OMP_NUM_THREADS")
    assert resolve_threads({"TIDEWISE_THREADS": "2"}, 8) == (2, "TIDEWISE_THREADS")


@pytest.mark.parametrize("bad", ["0", "-1", "two", "1.5"])
def test_a_bad_setting_is_a_clear_error(bad):
    with pytest.raises(ConfigError, match=f"TIDEWISE_THREADS={bad!r}: expected a whole number"):
        resolve_threads({"TIDEWISE_THREADS": bad}, 8)


def test_apply_sets_each_pool_unless_the_user_did():
    env = {"TIDEWISE_THREADS": "3", "MKL_NUM_THREADS": "1"}
    assert apply_thread_defaults(env) == (3, "TIDEWISE_THREADS")
    assert env["OMP_NUM_THREADS"] == "3" and env["OPENBLAS_NUM_THREADS"] == "3"
    assert env["MKL_NUM_THREADS"] == "1"


def _cli_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                        "TIDEWISE_THREADS")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def test_the_cli_sizes_the_pools_before_the_commands_load_numpy():
    code = ("import os, service.cli, threadpoolctl\n"
            "print(os.environ['OMP_NUM_THREADS'],"
            " max(p['num_threads'] for p in threadpoolctl.threadpool_info()))")
    out = subprocess.run([sys.executable, "-c", code], env=_cli_env(TIDEWISE_THREADS="1"),
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    assert out == ["1", "1"]  # numpy's BLAS, loaded by the commands' modules, holds one thread
    out = subprocess.run([sys.executable, "-c", code],
                         env=_cli_env(TIDEWISE_THREADS="1", OMP_NUM_THREADS="2"),
                         capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()
    assert out[0] == "2"


def test_a_bad_thread_setting_ends_the_cli_with_one_error_line():
    r = subprocess.run([sys.executable, "-m", "service.cli", "version"],
                       env=_cli_env(TIDEWISE_THREADS="lots"), capture_output=True, text=True,
                       cwd=ROOT)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: TIDEWISE_THREADS='lots': expected a whole number of "
                                "threads >= 1")
