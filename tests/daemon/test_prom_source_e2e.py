"""History read from the real Debian ``prometheus`` and ``victoria-metrics`` (end to end).

A scaling target with a ``source`` (:mod:`service.promsource`) reads its demand through
``/api/v1/query_range`` instead of from pushed samples. Both servers are started here (free
ports, temporary data folders, stopped afterwards):

* parity: the same samples pushed into Tidewise and written into the server (Prometheus'
  remote-write receiver, VictoriaMetrics' ``/api/v1/import``) give the same buckets, the same
  stored forecast and the same decisions, on SQLite and PostgreSQL;
* auth: ``vmauth`` in front of VictoriaMetrics checks a bearer token, a VictoriaMetrics of
  its own (``-httpAuth.*``) a basic password; the right ones read, a wrong one is an error
  naming URL, query and status (never the secret: vmauth quotes a refused token), and a 401
  makes the target's decision an invalid fallback that says so;
* node_exporter scraped at 1 s by Prometheus: the buckets a source reads are the means of
  Prometheus' own raw samples, and the refresh and decision run on them.

Skipped when the binaries are missing (``scripts/system-deps.sh`` installs them), failed
instead when ``CI`` is set.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import cramjam
import httpx
import numpy as np
import pytest
from pydantic import TypeAdapter

from service import decisions, forecasting, migrate, prompb, targets
from service.ingest import Batch
from service.promsource import PromSource, SourceError, read_buckets
from service.store import decisions as decision_store
from service.store import forecasts as forecast_store
from service.store import samples as sample_store
from service.store import targets as target_store
from service.store.db import Store
from tests.daemon.conftest_io import free_port, need_binaries, process, wait_for

STEP = 15
#: Store settings of the parity runs: 15-s buckets, a 15-minute context, a 30-minute window.
SETTINGS = {"forecast_step_s": STEP, "forecast_context_steps": 60,
            "forecast_horizon_steps": 8, "decision_history_s": 1800, "forecast_interval_s": 15}
SERVERS = ("prometheus", "victoria-metrics")

PROM_CONFIG = """\
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
scrape_configs:
  - job_name: node
    static_configs:
      - targets: ["127.0.0.1:{ne_port}"]
"""
VMAUTH_CONFIG = """\
users:
  - bearer_token: "{token}"
    url_prefix: "{vm}"
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Prometheus (remote-write receiver on, node_exporter scraped at 1 s) and VictoriaMetrics."""
    bins = need_binaries("prometheus", "prometheus-node-exporter", "victoria-metrics")
    tmp = tmp_path_factory.mktemp("promsource")
    ne_port, prom_port, vm_port = free_port(), free_port(), free_port()
    (tmp / "prometheus.yml").write_text(PROM_CONFIG.format(ne_port=ne_port))
    ne_argv = [bins["prometheus-node-exporter"], f"--web.listen-address=127.0.0.1:{ne_port}",
               "--collector.disable-defaults", "--collector.loadavg", "--collector.meminfo"]
    prom_argv = [bins["prometheus"], f"--config.file={tmp / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp / 'prom-data'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}",
                 "--web.enable-remote-write-receiver", "--log.level=warn"]
    vm_argv = [bins["victoria-metrics"], f"-storageDataPath={tmp / 'vm-data'}",
               f"-httpListenAddr=127.0.0.1:{vm_port}", "-loggerLevel=WARN"]
    prom, vm = f"http://127.0.0.1:{prom_port}", f"http://127.0.0.1:{vm_port}"
    with (
        process(ne_argv, tmp / "node_exporter.log", f"http://127.0.0.1:{ne_port}/metrics"),
        process(prom_argv, tmp / "prometheus.log", prom + "/-/ready"),
        process(vm_argv, tmp / "victoria-metrics.log", vm + "/health"),
    ):
        yield {"prometheus": prom, "victoria-metrics": vm, "node": f"127.0.0.1:{ne_port}"}


def write(server: str, url: str, labels: dict[str, str], points: list[tuple[int, float]]
          ) -> None:
    """Write (unix s, value) samples of one series into Prometheus or VictoriaMetrics."""
    if server == "prometheus":  # the remote-write receiver: a snappy WriteRequest
        req = prompb.WriteRequest()
        ts = req.timeseries.add()
        for name in sorted(labels):
            ts.labels.add(name=name, value=labels[name])
        for t, v in points:
            ts.samples.add(value=v, timestamp=t * 1000)
        r = httpx.post(url + "/api/v1/write",
                       content=bytes(cramjam.snappy.compress_raw(req.SerializeToString())),
                       headers={"Content-Type": "application/x-protobuf",
                                "Content-Encoding": "snappy",
                                "X-Prometheus-Remote-Write-Version": "0.1.0"}, timeout=30)
        assert r.status_code in (200, 204), r.text
        return
    line = json.dumps({"metric": labels, "values": [v for _, v in points],
                       "timestamps": [t * 1000 for t, _ in points]})
    r = httpx.post(url + "/api/v1/import", content=line, timeout=30)
    assert r.status_code == 204, r.text
    httpx.get(url + "/internal/force_flush", timeout=30).raise_for_status()


def demand_samples(rng: np.random.Generator, now: int) -> list[tuple[int, float]]:
    """Half an hour of 1-s demand before ``now`` with missed seconds and a 2-minute outage.

    Plus ten seconds after ``now`` (the bucket in progress, which neither side may read).
    """
    ts = np.arange(now - 1800, now + 10)
    values = 4 + 2 * np.sin(2 * np.pi * ts / 600) + rng.gamma(2.0, 0.4, len(ts))
    keep = (rng.random(len(ts)) > 0.05) & ~((ts >= now - 900) & (ts < now - 780))
    return [(int(t), round(float(v), 3)) for t, v in zip(ts[keep], values[keep], strict=True)]


def open_store(settings_factory, **kw) -> Store:  # noqa: ANN001
    settings = settings_factory(**kw)
    migrate.upgrade(settings)
    return Store(settings)


def declare(store: Store, body: dict) -> None:
    targets.declare(store, TypeAdapter(targets.TargetIn).validate_python(body))


def scaling(name: str, entity: str, forecaster: str, **kw) -> dict:
    return {"kind": "scaling", "name": name, "entity": entity, "metric": "demand",
            "capacity": 1.5, "min_replicas": 1, "max_replicas": 30, "boot_s": 30,
            "policy": "bayes", "forecaster": forecaster, **kw}


def latest(store: Store, name: str):  # noqa: ANN201
    with store.sessions() as session:
        target = target_store.get_target(session, name)
        return decision_store.latest_decision(session, target.id)


def assert_same(a: object, b: object, where: str = "") -> None:
    """Equal, numbers within float tolerance (nested dicts and lists)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            assert_same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9), (where, a, b)
    else:
        assert a == b, (where, a, b)


@pytest.mark.parametrize("server", SERVERS)
def test_source_gives_the_forecast_and_decisions_of_pushed_samples(
        servers, server, settings_factory, seed) -> None:  # noqa: ANN001
    # a decision time a minute in the past: VictoriaMetrics hides the last 30 s by default
    real = int(time.time())
    now = real - real % STEP - 60
    points = demand_samples(np.random.default_rng(seed), now)
    series = f"parity-{server}-{seed}-{uuid.uuid4().hex}"  # one per run: two in one second collided
    write(server, servers[server], {"__name__": "demand", "series": series}, points)

    store = open_store(settings_factory, **SETTINGS)
    sample_store.ingest(store, Batch(
        keys=[("pushed", "demand")] * len(points), ts=[t for t, _ in points],
        values=[v for _, v in points], kinds={"pushed": "vm"}, first_item={}, labels={},
        units={}))
    source = {"serverAddress": servers[server], "query": f'demand{{series="{series}"}}',
              "aggregate": "avg"}
    for fc in ("online", "stored"):
        declare(store, scaling(f"pushed-{fc}", "pushed", fc))
        declare(store, scaling(f"sourced-{fc}", "sourced", fc, source=source))

    # the buckets: the same values and the same gaps through the one door
    history = forecasting.History.of(store)
    n = 120
    ts_p, pushed = history.buckets("pushed", "demand", now, STEP, n)
    ts_s, sourced = history.buckets("sourced", "demand", now, STEP, n)
    assert (ts_p == ts_s).all()
    assert (np.isnan(pushed) == np.isnan(sourced)).all()
    assert np.isnan(pushed).sum() >= 8  # the outage reads as gaps on both sides
    np.testing.assert_allclose(sourced[np.isfinite(sourced)], pushed[np.isfinite(pushed)],
                               rtol=1e-12)

    result = forecasting.refresh(store, now)
    assert result.errors == [] and result.forecasts == 2, result
    with store.sessions() as session:
        fp = forecast_store.latest_forecast(session, "pushed", "demand")
        fs = forecast_store.latest_forecast(session, "sourced", "demand")
        # the sample paths (a deferred column: read while the session is open), stored as
        # float32: inputs equal within 1e-12 may round to neighbouring float32 values
        np.testing.assert_allclose(forecast_store.samples_of(fs),
                                   forecast_store.samples_of(fp), rtol=2.5e-7)
    assert not fp.fallback and fp.model == fs.model and fp.start == fs.start
    # the differences: the entity the forecast is of, and the source's input time (the
    # last second of its newest bucket: the bucket in progress is not read)
    assert (fp.payload["info"].pop("entity", "pushed"),
            fs.payload["info"].pop("entity", "sourced")) == ("pushed", "sourced")
    assert fs.payload["info"].pop("source_last_ts") == now - 1
    assert_same(fs.payload, fp.payload, "forecast")

    outcomes = {o.target: o for o in decisions.decide_all(store, now)}
    for fc in ("online", "stored"):
        p, s = outcomes[f"pushed-{fc}"], outcomes[f"sourced-{fc}"]
        assert p.valid and s.valid, (p, s)
        assert (p.desired, p.why, p.fallback) == (s.desired, s.why, s.fallback)
        rp, rs = latest(store, f"pushed-{fc}"), latest(store, f"sourced-{fc}")
        assert_same(rs.action, rp.action, f"{fc}.action")
        assert_same(rs.details, rp.details, f"{fc}.details")
        assert_same(rs.memory, rp.memory, f"{fc}.memory")
    store.close()


def test_long_ranges_are_read_in_chunks_under_prometheus_point_limit(servers) -> None:
    prom = servers["prometheus"]
    real = int(time.time())
    now = real - real % STEP
    step = 1
    # the last 50 minutes (Prometheus takes remote-written samples up to 1 h behind its head)
    points = [(t, float(t % 997)) for t in range(now - 3000, now)]
    series = f"chunks-{uuid.uuid4().hex}"
    write("prometheus", prom, {"__name__": "demand", "series": series}, points)
    src = PromSource(serverAddress=prom, query=f'demand{{series="{series}"}}')
    # one request of 12,000 points is over Prometheus' 11,000 per series: refused ...
    with pytest.raises(SourceError) as err:
        read_buckets(src, now, step, 12_000, max_points=12_000)
    assert "11,000" in str(err.value) and "HTTP 400" in str(err.value), err.value
    assert prom + "/api/v1/query_range" in str(err.value)
    # ... and read in chunks (default 10,000, here 5,000: the data spans a chunk boundary)
    # every bucket is there, once, in its place
    for chunk in (10_000, 5_000):
        ts, v = read_buckets(src, now, step, 12_000, max_points=chunk)
        assert (ts == np.arange(now - 12_000, now)).all()
        np.testing.assert_array_equal(v[-3000:], (ts[-3000:] % 997).astype(float))
        assert np.isnan(v[:-3000]).all()


@pytest.fixture
def guarded(servers, tmp_path: Path) -> Iterator[dict[str, str]]:
    """Two guarded doors: vmauth (a bearer token) in front of the module's VictoriaMetrics,
    and a VictoriaMetrics of its own behind basic auth (``-httpAuth.*``)."""
    bins = need_binaries("vmauth", "victoria-metrics")
    secrets = {"token": f"tok-{time.time_ns()}", "password": f"pw-{time.time_ns()}"}
    (tmp_path / "auth.yml").write_text(VMAUTH_CONFIG.format(vm=servers["victoria-metrics"],
                                                            token=secrets["token"]))
    auth_port, vm_port = free_port(), free_port()
    vmauth_argv = [bins["vmauth"], f"-auth.config={tmp_path / 'auth.yml'}",
                   f"-httpListenAddr=127.0.0.1:{auth_port}", "-loggerLevel=WARN"]
    vm_argv = [bins["victoria-metrics"], f"-storageDataPath={tmp_path / 'vm-basic'}",
               f"-httpListenAddr=127.0.0.1:{vm_port}", "-loggerLevel=WARN",
               "-httpAuth.username=tidewise", f"-httpAuth.password={secrets['password']}"]
    with (
        process(vmauth_argv, tmp_path / "vmauth.log", f"http://127.0.0.1:{auth_port}/health"),
        process(vm_argv, tmp_path / "vm-basic.log", f"http://127.0.0.1:{vm_port}/health"),
    ):
        yield {"bearer": f"http://127.0.0.1:{auth_port}", "basic": f"http://127.0.0.1:{vm_port}",
               **secrets}


def test_bearer_and_basic_auth_reach_the_source_and_a_401_is_a_fallback_with_a_reason(
        servers, guarded, settings_factory, tmp_path, monkeypatch) -> None:  # noqa: ANN001
    real = int(time.time())
    now = real - real % STEP - 60
    series = f"auth-{uuid.uuid4().hex}"
    points = [(t, 2.0 + (t % 60) / 60) for t in range(now - 1800, now)]
    write("victoria-metrics", servers["victoria-metrics"],
          {"__name__": "demand", "series": series}, points)
    query = f'demand{{series="{series}"}}'
    basic_vm = httpx.Client(auth=("tidewise", guarded["password"]), timeout=30)
    line = json.dumps({"metric": {"__name__": "demand", "series": series},
                       "values": [v for _, v in points],
                       "timestamps": [t * 1000 for t, _ in points]})
    assert basic_vm.post(guarded["basic"] + "/api/v1/import", content=line).status_code == 204
    basic_vm.get(guarded["basic"] + "/internal/force_flush").raise_for_status()
    monkeypatch.setenv("TIDEWISE_SOURCE_VM_TOKEN", guarded["token"])
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "vm-password").write_text(guarded["password"] + "\n")
    store = open_store(settings_factory, source_secrets_dir=str(secrets), **SETTINGS)
    direct = PromSource(serverAddress=servers["victoria-metrics"], query=query, aggregate="avg")
    want = read_buckets(direct, now, STEP, 60)[1]
    assert np.isfinite(want).all()

    bearer = {"serverAddress": guarded["bearer"], "query": query, "aggregate": "avg",
              "authModes": "bearer", "bearerTokenEnv": "TIDEWISE_SOURCE_VM_TOKEN"}
    basic = {"serverAddress": guarded["basic"], "query": query, "aggregate": "avg",
             "authModes": "basic", "username": "tidewise", "passwordFile": "vm-password"}
    for src in (bearer, basic):  # the right credentials: the very values VM holds
        got = read_buckets(PromSource(**src), now, STEP, 60, str(secrets))[1]
        np.testing.assert_array_equal(got, want)
        with pytest.raises(SourceError) as err:  # no credentials: refused, and said so
            read_buckets(PromSource(serverAddress=src["serverAddress"], query=query), now,
                         STEP, 60)
        assert "authModes" in str(err.value), err.value

    # a wrong token: vmauth answers 400 quoting it; the error names URL, query and status
    # and leaves the token out
    monkeypatch.setenv("TIDEWISE_SOURCE_VM_TOKEN", "not-the-token")
    with pytest.raises(SourceError) as err:
        read_buckets(PromSource(**bearer), now, STEP, 60)
    msg = str(err.value)
    assert "HTTP 400" in msg and guarded["bearer"] + "/api/v1/query_range" in msg, msg
    assert query in msg and "not-the-token" not in msg and "***" in msg, msg

    # a wrong password: 401, through the daemon's jobs: the refresh records it, the decision
    # is an invalid fallback that says why (no crash, nothing recommended yet)
    (secrets / "vm-password").write_text("not-the-password")
    declare(store, scaling("guarded", "guarded-vm", "stored", source=basic))
    result = forecasting.refresh(store, now)
    assert len(result.errors) == 1 and "HTTP 401" in result.errors[0], result.errors
    (out,) = decisions.decide_all(store, now)
    assert not out.valid and out.fallback and out.desired == {}
    assert "HTTP 401" in out.why and "setting kept" in out.why and query in out.why, out.why
    assert guarded["basic"] in out.why and "not-the-password" not in out.why
    # the right password again (a rotated secret is read at every request): it decides
    (secrets / "vm-password").write_text(guarded["password"])
    assert forecasting.refresh(store, now + STEP).errors == []
    (out,) = decisions.decide_all(store, now + STEP)
    assert out.valid and out.desired["replicas"] >= 1, out
    with store.sessions() as session:
        shown = json.dumps(targets.describe(target_store.get_target(session, "guarded")))
    assert guarded["password"] not in shown and "vm-password" in shown
    store.close()


def test_node_exporter_scraped_at_1s_is_read_from_prometheus(servers, settings_factory
                                                              ) -> None:  # noqa: ANN001
    prom, instance = servers["prometheus"], servers["node"]
    selector = f'node_memory_MemAvailable_bytes{{instance="{instance}"}}'
    raw_q = {"query": f"{selector}[90s]"}

    def raw() -> list[tuple[float, float]]:
        r = httpx.get(prom + "/api/v1/query", params=raw_q, timeout=10).json()
        res = r["data"]["result"]
        return [(float(t), float(v)) for t, v in res[0]["values"]] if res else []

    wait_for(lambda: len(raw()) >= 20, timeout_s=40, what="20 scrapes of node_exporter")
    now = int(time.time())
    samples = raw()
    src = PromSource(serverAddress=prom, query=selector, aggregate="avg")
    ts, got = read_buckets(src, now, 1, 30)
    # every complete second Prometheus holds a sample of: that sample's value
    by_second: dict[int, list[float]] = {}
    for t, v in samples:
        if not math.isclose(t % 1, 0.999, abs_tol=1e-6):  # Prometheus 2's windows are closed
            by_second.setdefault(math.floor(t), []).append(v)
    checked = 0
    for b, v in zip(ts, got, strict=True):
        if int(b) in by_second and b < now - 1:
            assert v == pytest.approx(np.mean(by_second[int(b)]), rel=1e-12), b
            checked += 1
    assert checked >= 15, (checked, samples)

    # the same scraped samples pushed into Tidewise decide what the source decides
    store = open_store(settings_factory, forecast_step_s=1, forecast_context_steps=20,
                       forecast_horizon_steps=5, decision_history_s=60, forecast_interval_s=5)
    pushed = {math.floor(t): v for t, v in samples}
    sample_store.ingest(store, Batch(
        keys=[("pushed", "mem_available")] * len(pushed), ts=list(pushed),
        values=list(pushed.values()), kinds={"pushed": "vm"}, first_item={}, labels={},
        units={}))
    twin = {"kind": "scaling", "metric": "mem_available", "capacity": 2e9, "max_replicas": 64,
            "policy": "hpa", "forecaster": "online"}
    declare(store, {**twin, "name": "node", "entity": instance,
                    "source": {"serverAddress": prom, "query": selector, "aggregate": "avg"}})
    declare(store, {**twin, "name": "pushed", "entity": "pushed"})
    result = forecasting.refresh(store, now)
    assert result.errors == [] and result.forecasts == 2, result
    with store.sessions() as session:
        fc = forecast_store.latest_forecast(session, instance, "mem_available")
    assert fc.start == now and len(fc.payload["mean"]) == 5 and not fc.fallback
    assert np.nanmin(got) * 0.5 < fc.payload["mean"][0] < np.nanmax(got) * 2
    out = {o.target: o for o in decisions.decide_all(store, now)}
    assert out["node"].valid and out["node"].desired["replicas"] >= 1, out
    assert (out["node"].desired, out["node"].why) == (out["pushed"].desired, out["pushed"].why)
    store.close()
