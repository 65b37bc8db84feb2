"""End to end: the real Debian ``prometheus`` scrapes a live ``tidewise serve``'s ``/metrics``.

Prometheus scrapes every second with a ``read`` bearer token; the test feeds two series
through the API, declares a scaling target, and then asks Prometheus' own HTTP API
(``/api/v1/query``) for a forecast quantile and the desired replica count, which must be
exactly what Tidewise serves on ``GET /v1/forecasts`` and ``GET /v1/recommendations``. The
README's PromQL examples are checked to be in the README and to evaluate in Prometheus.

Skipped when the binary is missing (``scripts/system-deps.sh`` installs it), failed
instead when ``CI`` is set.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx

from tests.daemon.conftest_io import (
    ROOT,
    free_port,
    need_binaries,
    process,
    tidewise_daemon,
    wait_for,
)

INGEST_TOKEN = "e2e-ingest-0123456789abcdef"
READ_TOKEN = "e2e-read-0123456789abcdef"
TOKENS = f"feeder:{INGEST_TOKEN}:ingest,prom:{READ_TOKEN}:read+act"
#: A metric name with quotes and braces: its label value must survive the escaping.
REQUESTS = 'requests{path="/a"}'

PROM_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: tidewise
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials: {token}
    static_configs:
      - targets: ["{target}"]
"""

#: The PromQL the README shows (band, stale-input alert, KEDA query), kept true here.
README_PROMQL = (
    'tidewise_forecast{entity="web-vm", metric="cpu_cores", quantile=~"0.1|0.5|0.9", '
    'horizon_s="60"}',
    "max by (entity, metric) (tidewise_input_age_seconds) > 120",
    'tidewise_desired{target="web", setting="replicas"}',
)


def _query(prom_url: str, expr: str) -> list[dict]:
    r = httpx.get(prom_url + "/api/v1/query", params={"query": expr}, timeout=10)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def _value(prom_url: str, expr: str) -> float | None:
    result = _query(prom_url, expr)
    return float(result[0]["value"][1]) if len(result) == 1 else None


def test_prometheus_scrapes_forecasts_and_desired_replicas(tmp_path: Path) -> None:
    bins = need_binaries("prometheus")
    with tidewise_daemon(
        tmp_path,
        TIDEWISE_TOKENS=TOKENS,
        # forecast (then decide) every 2 s over 1-s buckets, a minute ahead
        TIDEWISE_FORECAST_INTERVAL_S="2",
        TIDEWISE_FORECAST_STEP_S="1",
        TIDEWISE_FORECAST_HORIZON_STEPS="60",
        # 80 buckets read, 20 of context for the model fitted on the spot: a series that
        # stops falls back (more than half its context missing) within about 11 s
        TIDEWISE_FORECAST_CONTEXT_STEPS="80",
        TIDEWISE_EXPORT_HORIZONS_S="5,60",
        TIDEWISE_MODEL_DIR=str(tmp_path / "models"),
    ) as tw_url:
        port = tw_url.rsplit(":", 1)[1]
        (tmp_path / "prometheus.yml").write_text(
            PROM_CONFIG.format(token=READ_TOKEN, target=f"127.0.0.1:{port}")
        )
        prom_port = free_port()
        prom_argv = [
            bins["prometheus"],
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--log.level=warn",
        ]
        prom_url = f"http://127.0.0.1:{prom_port}"
        with (
            process(prom_argv, tmp_path / "prometheus.log", prom_url + "/-/ready"),
            httpx.Client(
                base_url=tw_url, timeout=10, headers={"Authorization": f"Bearer {READ_TOKEN}"}
            ) as http,
        ):
            now = int(time.time())
            # cpu_cores: 7 cores, constant, up to now (its input age then grows, and its
            # forecast becomes the fallback once buckets after `now` are missing);
            # requests: 6 and 8 in turn, fed 3 minutes ahead so every refresh sees the
            # same window (a stable forecast with a spread).
            samples = [
                {"entity": "web-vm", "kind": "vm", "metric": "cpu_cores", "ts": t, "value": 7.0}
                for t in range(now - 300, now + 1)
            ] + [
                {"entity": "web-vm", "kind": "vm", "metric": REQUESTS, "ts": t,
                 "value": 6.0 if t % 2 else 8.0}
                for t in range(now - 300, now + 180)
            ]
            r = http.post("/v1/metrics", json={"samples": samples},
                          headers={"Authorization": f"Bearer {INGEST_TOKEN}"})
            assert r.status_code == 200, r.text
            target = {"kind": "scaling", "name": "web", "entity": "web-vm",
                      "metric": "cpu_cores", "capacity": 2.0, "min_replicas": 1,
                      "max_replicas": 20, "boot_s": 30, "policy": "hpa",
                      "params": {"target": 1.0, "tolerance": 0.0}}
            r = http.post("/v1/targets", json=target)
            assert r.status_code == 201, r.text

            # The desired replica count, as Prometheus stored it from a scrape.
            desired_q = 'tidewise_desired{target="web", kind="scaling", setting="replicas"}'
            replicas = wait_for(lambda: _value(prom_url, desired_q), timeout_s=60,
                                what="tidewise_desired in Prometheus")
            rec = http.get("/v1/recommendations/web").json()
            # 7 cores at 2 per replica and a utilisation target of 1: ceil(7 / 2) = 4
            assert replicas == rec["desired"]["replicas"] == 4, (replicas, rec)

            # A forecast quantile: what Prometheus holds equals what Tidewise serves.
            def quantiles() -> tuple[float, float, float] | None:
                sel = f'entity="web-vm", metric=\'{REQUESTS}\', horizon_s="5"'
                lo = _value(prom_url, f'tidewise_forecast{{{sel}, quantile="0.1"}}')
                hi = _value(prom_url, f'tidewise_forecast{{{sel}, quantile="0.9"}}')
                fc = http.get("/v1/forecasts/web-vm", params={"metric": REQUESTS})
                if lo is None or hi is None or fc.status_code != 200:
                    return None
                step = fc.json()["steps"][4]  # 5 s after the origin with 1-s steps
                return (lo, hi, step) if (lo, hi) == (step["lo-80"], step["hi-80"]) else None

            lo, hi, step = wait_for(quantiles, timeout_s=30,
                                    what="the forecast quantiles in Prometheus")
            assert 6.0 <= lo < step["median"] < hi <= 8.0, (lo, hi, step)
            # the metric name with quotes came back exactly, as a label value
            got = _query(prom_url, f"tidewise_forecast{{metric='{REQUESTS}'}}")
            assert {s["metric"]["metric"] for s in got} == {REQUESTS}
            assert {(s["metric"]["quantile"], s["metric"]["horizon_s"]) for s in got} == {
                (q, h) for q in ("0.1", "0.5", "0.9", "0.99") for h in ("5", "60")
            }

            # Ages and the fallback flag arrive too; the README's PromQL evaluates.
            age = _value(prom_url, 'tidewise_input_age_seconds{metric="cpu_cores"}')
            assert age is not None and 0 <= age <= time.time() - now + 5
            assert _value(prom_url, f"tidewise_forecast_fallback{{metric='{REQUESTS}'}}") == 0
            # cpu_cores stopped at `now`: its next forecasts are the fallback, for gaps
            wait_for(
                lambda: _value(
                    prom_url, 'tidewise_forecast_fallback{metric="cpu_cores", reason="gaps"}'
                ) == 1,
                timeout_s=30,
                what="the fallback flag of cpu_cores in Prometheus",
            )
            dec_age = _value(prom_url, 'tidewise_decision_age_seconds{target="web"}')
            assert dec_age is not None and dec_age < 30
            band = {s["metric"]["quantile"]: float(s["value"][1])
                    for s in _query(prom_url, README_PROMQL[0])}
            assert band == {"0.1": 7.0, "0.5": 7.0, "0.9": 7.0}  # a constant 7 cores
            assert _query(prom_url, README_PROMQL[1]) == []  # the input is fresh
            assert [s["metric"]["target"] for s in _query(prom_url, README_PROMQL[2])] == ["web"]
            text = (tmp_path / "prometheus.log").read_text()
            assert not re.search(r"level=(error|ERROR)", text), text[-2000:]
    # shown in the README's tour and on the docs page that explains them
    for page in ("README.md", "docs/daemon.md"):
        text = (ROOT / page).read_text()
        for expr in README_PROMQL:
            assert expr in text, (page, expr)
