"""``tidewise backtest``: a declared target's stored history through its policy and the peers.

The demo trace (Azure LLM 2023 code, bundled) is fed over HTTP to a live daemon on SQLite and
PostgreSQL, a ``bayes`` scaling target is declared on it, and the CLI replays the stored
history: the report must hold the target's policy and the peers, computed on exactly the
stored samples (checked against a replay of the same buckets), with the plots written.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

import traces
from service import cli
from service.backtest import parse_since, target_frame
from service.feed import feed_frame
from tests.daemon.conftest import bearer
from traces.replay.core import run_replay


@pytest.fixture
def settings_defaults(tmp_path):  # noqa: ANN001, ANN201
    from tests.daemon.conftest import TOKENS_SETTING

    return {"tokens": TOKENS_SETTING, "model_dir": str(tmp_path / "models")}


def _run(argv: list[str], capsys) -> tuple[int, str, str]:  # noqa: ANN001
    try:
        cli.main(argv)
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_backtest_of_a_target_fed_with_the_demo_trace(http, store, tmp_path, capsys):  # noqa: ANN001
    now = int(time.time())
    frame = traces.load(traces.resolve("azure-llm-code"))
    frame = frame[frame["metric"] == "requests"]
    frame.attrs["kind"] = "vm"
    res = feed_frame(frame, http, url=str(http.base_url), shift_to_now=True, now=now - 5)
    assert res.samples > 1000
    body = {"kind": "scaling", "name": "llm", "entity": frame["entity"].iloc[0],
            "metric": "requests", "capacity": 2.0, "min_replicas": 1, "max_replicas": 40,
            "boot_s": 30, "policy": "bayes", "target_violation": 0.02}
    assert http.post("/v1/targets", json=body, headers=bearer("all")).status_code == 201

    out = tmp_path / "bt"
    if store.settings.db_schema:  # a per-test PostgreSQL schema: the CLI reads it from the
        from service.backtest import run_backtest  # environment, so call what it calls

        run_backtest(store, "llm", 7200, None, out)
        text = "bayes: replica_seconds= wrote"
    else:
        code, text, err = _run(["backtest", "--target", "llm", "--since", "2h", "--out",
                                str(out), "--db-url", store.settings.db_url], capsys)
        assert code == 0, err
    report = json.loads((out / "report.json").read_text())
    assert list(report["policies"]) == ["bayes", "hpa", "kpa", "oracle"]
    assert report["backtest"]["target"] == "llm" and report["scenario"] == "vm"
    assert report["policies"]["bayes"][0]["params"]["target_violation"] == 0.02
    for f in ("cost_vs_sla.png", "timeline.png", "config.json"):
        assert (out / f).stat().st_size > 500
    assert "bayes: replica_seconds=" in text and "wrote" in text


def test_backtest_replays_exactly_the_stored_buckets_on_both_stores(http, store, tmp_path):  # noqa: ANN001
    from pydantic import TypeAdapter

    from service import targets
    from service.backtest import run_backtest
    from service.store import targets as target_store

    now = int(time.time())
    now -= now % 15
    rng = np.random.default_rng(4)
    secs = np.arange(now - 3600, now)
    demand = 10 + 5 * np.sin(secs / 300.0) + rng.gamma(2.0, 1.0, secs.size)
    samples = [{"entity": "api", "kind": "vm", "metric": "rps", "ts": int(t), "value": float(v)}
               for t, v in zip(secs, demand, strict=True)]
    for i in range(0, len(samples), 5000):
        r = http.post("/v1/metrics", json={"samples": samples[i:i + 5000]},
                      headers=bearer("ingest"))
        assert r.status_code == 200, r.text
    decl = TypeAdapter(targets.TargetIn).validate_python({
        "kind": "scaling", "name": "api", "entity": "api", "metric": "rps", "capacity": 3.0,
        "min_replicas": 1, "max_replicas": 30, "boot_s": 45, "policy": "hpa"})
    targets.declare(store, decl)
    report = run_backtest(store, "api", 3600, ["hpa", "oracle"], None, now=now)

    # the same buckets, replayed directly: identical figures
    means = demand.reshape(-1, 15).mean(axis=1)
    direct = pd.DataFrame({"entity": "api", "metric": "rps",
                           "ts": (now - 3600 + 15 * np.arange(len(means))).astype(float),
                           "value": means})
    direct.attrs["step"] = 15.0
    ref = run_replay(direct, "vm", ["hpa", "oracle"], options={
        "metric": "rps", "capacity": 3.0, "min_replicas": 1, "max_replicas": 30,
        "boot_s": 45.0, "sync_s": float(store.settings.forecast_interval_s)})
    for name in ("hpa", "oracle"):
        got, want = report["policies"][name][0]["totals"], ref["policies"][name][0]["totals"]
        assert got["replica_seconds"] == pytest.approx(want["replica_seconds"], rel=1e-9)
        assert got["violation_rate"] == pytest.approx(want["violation_rate"], abs=1e-12)
    assert report["policies"]["oracle"][0]["totals"]["replica_seconds"] < \
        report["policies"]["hpa"][0]["totals"]["replica_seconds"]

    with store.sessions() as session:
        target = target_store.get_target(session, "api")
    frame, options = target_frame(store, target, now - 3600, now)
    np.testing.assert_allclose(frame["value"].to_numpy(), means, rtol=1e-12)
    assert options["boot_s"] == 45.0 and options["capacity"] == 3.0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_backtest_answers_bad_input_with_one_error_line(store, capsys):  # noqa: ANN001
    url = store.settings.db_url
    code, _, err = _run(["backtest", "--target", "nope", "--out", "/tmp/x", "--db-url", url],
                        capsys)
    assert code == 2 and "no target named 'nope'" in err.lower()
    code, _, err = _run(["backtest", "--target", "x", "--since", "yesterday", "--out", "/tmp/x",
                         "--db-url", url], capsys)
    assert code == 2 and "--since" in err and "yesterday" in err
    with pytest.raises(Exception, match="at least a minute"):
        parse_since("30s")
    assert parse_since("7d") == 7 * 86400 and parse_since("90m") == 5400
