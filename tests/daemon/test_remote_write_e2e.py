"""End to end with the real Debian ``prometheus`` and ``prometheus-node-exporter``.

node_exporter ─(scrape, 1 s)─► Prometheus ─(remote-write, bearer token)─► tidewise serve
(a real subprocess on a temporary SQLite file). A recording rule turns the CPU counters
into a ``cpu_util`` gauge, which Prometheus remote-writes like any other series. The test
checks that per-second samples arrive, that they are exactly the samples Prometheus holds
(compared through Prometheus' own HTTP API) and that counters arrive as counters.

Skipped when the binaries are missing (``scripts/system-deps.sh`` installs them), failed
instead when ``CI`` is set.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import httpx

from tests.daemon.conftest_io import free_port, need_binaries, process, tidewise_daemon, wait_for

INGEST_TOKEN = "prom-ingest-0123456789abcdef"
READ_TOKEN = "test-read-0123456789abcdef"
TOKENS = f"prom:{INGEST_TOKEN}:ingest,tester:{READ_TOKEN}:read+act"
#: What Prometheus forwards (write_relabel_configs keep): a few node series, the rule, up.
KEPT = "node_cpu_seconds_total|node_load1|node_memory_MemAvailable_bytes|cpu_util|up"

PROM_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files: [{rules}]
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:{ne_port}"]
remote_write:
  - url: {tw_url}/api/v1/write
    authorization:
      type: Bearer
      credentials: {token}
    write_relabel_configs:
      - source_labels: [__name__]
        regex: "{kept}"
        action: keep
    queue_config:
      batch_send_deadline: 500ms
      max_samples_per_send: 2000
      min_backoff: 100ms
      max_backoff: 1s
"""
RULES = """\
groups:
  - name: tidewise
    interval: 1s
    rules:
      - record: cpu_util
        expr: 100 * (1 - avg by (instance, job) (rate(node_cpu_seconds_total{mode="idle"}[5s])))
"""


def _series(http: httpx.Client, entity: str, metric: str) -> list[tuple[int, float]]:
    start = int(time.time()) - 300
    r = http.get("/v1/series", params={"entity": entity, "metric": metric, "start": start})
    if r.status_code == 404:
        return []
    r.raise_for_status()
    return [(int(t), float(v)) for t, v in r.json()["points"]]


def test_prometheus_remote_writes_node_exporter_samples(tmp_path: Path) -> None:
    bins = need_binaries("prometheus", "prometheus-node-exporter")
    ne_port, prom_port = free_port(), free_port()
    instance = f"127.0.0.1:{ne_port}"
    ne_argv = [
        bins["prometheus-node-exporter"],
        f"--web.listen-address=127.0.0.1:{ne_port}",
        # only what the test forwards: a full scrape costs CPU on a shared machine
        "--collector.disable-defaults",
        "--collector.cpu",
        "--collector.loadavg",
        "--collector.meminfo",
    ]
    with (
        process(ne_argv, tmp_path / "node_exporter.log", f"http://{instance}/metrics"),
        tidewise_daemon(
            tmp_path,
            TIDEWISE_TOKENS=TOKENS,
            # forecast every 2 s over 1-s buckets, so a decision follows within seconds
            TIDEWISE_FORECAST_INTERVAL_S="2",
            TIDEWISE_FORECAST_STEP_S="1",
            TIDEWISE_FORECAST_HORIZON_STEPS="10",
            TIDEWISE_MODEL_DIR=str(tmp_path / "models"),
        ) as tw_url,
    ):
        (tmp_path / "rules.yml").write_text(RULES)
        (tmp_path / "prometheus.yml").write_text(
            PROM_CONFIG.format(
                rules=tmp_path / "rules.yml",
                ne_port=ne_port,
                tw_url=tw_url,
                token=INGEST_TOKEN,
                kept=KEPT,
            )
        )
        prom_argv = [
            bins["prometheus"],
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'prom-data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]
        prom_url = f"http://127.0.0.1:{prom_port}"
        with (
            process(prom_argv, tmp_path / "prometheus.log", prom_url + "/-/ready"),
            httpx.Client(
                base_url=tw_url, timeout=10, headers={"Authorization": f"Bearer {READ_TOKEN}"}
            ) as http,
        ):
            # Per-second samples of a gauge, a counter and the recording rule arrive.
            load = wait_for(
                lambda: len(p := _series(http, instance, "node_load1")) >= 8 and p,
                timeout_s=40,
                what="8 samples of node_load1 in Tidewise",
            )
            util = wait_for(
                lambda: len(p := _series(http, instance, "cpu_util")) >= 3 and p,
                timeout_s=20,
                what="3 samples of the cpu_util recording rule",
            )
            mem_metric = "node_memory_MemAvailable_bytes"
            idle_metric = 'node_cpu_seconds_total{cpu="0",mode="idle"}'
            mem = _series(http, instance, mem_metric)
            idle = _series(http, instance, idle_metric)

            # One sample per second: the 1 s scrape interval survives the trip (a scrape
            # may be late or time out on a loaded machine, so a few short gaps are tolerated).
            steps = [b[0] - a[0] for a, b in zip(load, load[1:], strict=False)]
            assert steps.count(1) >= 0.75 * len(steps) and max(steps) <= 5, steps
            assert all(0.0 <= v <= 100.0 for _, v in util), util
            assert all(v >= 0 for _, v in load)
            # A counter arrives as a counter (rates are derived later), monotone.
            assert len(idle) >= 5
            assert all(b[1] >= a[1] for a, b in zip(idle, idle[1:], strict=False)), idle

            # Exactly Prometheus' samples: its raw samples of the last 30 s, timestamps
            # floored to the second, must be the values Tidewise stored at those seconds.
            r = httpx.get(
                prom_url + "/api/v1/query", params={"query": f"{mem_metric}[30s]"}, timeout=10
            )
            r.raise_for_status()
            raw = r.json()["data"]["result"][0]["values"]
            stored = dict(_series(http, instance, mem_metric))
            matched = [(math.floor(t), float(v)) for t, v in raw if math.floor(t) in stored]
            assert len(matched) >= 5, (raw, stored)
            assert all(stored[t] == v for t, v in matched), (matched, stored)
            assert mem and all(v > 0 for _, v in mem)

            ents = {e["name"]: e for e in http.get("/v1/entities").json()["entities"]}
            assert ents[instance]["kind"] == "vm"
            assert ents[instance]["labels"] == {"job": "node"}
            units = {m["metric"]: m["unit"] for m in ents[instance]["metrics"]}
            assert units[mem_metric] == "bytes"
            assert units[idle_metric] == "seconds (counter)"
            assert units["cpu_util"] == "percent"  # Tidewise's own vocabulary
            # Only what write_relabel_configs kept was sent.
            assert {m.split("{")[0] for m in units} <= set(KEPT.split("|"))

            # A target on the remote-written cpu_util gets a forecast and a decision.
            target = {
                "name": "node",
                "kind": "scaling",
                "entity": instance,
                "metric": "cpu_util",
                "capacity": 50,
                "min_replicas": 1,
                "max_replicas": 8,
            }
            r = http.post("/v1/targets", json=target)
            assert r.status_code == 201, r.text
            rec = wait_for(
                lambda: (x := http.get("/v1/recommendations/node").json()).get("ready") and x,
                timeout_s=30,
                what="a decision for the target on cpu_util",
            )
            assert rec["valid"] is True
            assert 1 <= rec["desired"]["replicas"] <= 8
            fc = http.get(f"/v1/forecasts/{instance}", params={"metric": "cpu_util"})
            assert fc.status_code == 200, fc.text
            steps = fc.json()["steps"]
            assert len(steps) == 10
            last_util = _series(http, instance, "cpu_util")[-1][0]
            assert steps[0]["ts"] > last_util - 5  # a forecast of what comes next
            assert all(s["lo-90"] <= s["median"] <= s["hi-90"] for s in steps)
            actions = http.get("/v1/actions", params={"target": "node"}).json()["actions"]
            assert actions and actions[0]["desired"]["replicas"] >= 1
