"""KEDA metrics-api and Kubernetes External Metrics API shapes, over HTTP."""

from __future__ import annotations

import time

import pytest

from service import decisions
from service.routes.daemon import quantity
from tests.daemon.conftest import bearer, scaling_target, send

EXT = "/apis/external.metrics.k8s.io/v1beta1"


def test_quantity_strings():
    assert [quantity(v) for v in (0, 5, 5.0, 2.5, 0.125)] == ["0", "5", "5", "2500m", "125m"]


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_keda_and_external_metrics_serve_the_stored_decision(http, anon, store):
    now = int(time.time())
    send(http, "web-vm", "vm", "cpu_cores", [(now - 600 + i, 7.0) for i in range(600)])
    send(http, "api-vm", "vm", "cpu_cores", [(now - 600 + i, 1.0) for i in range(600)])
    http.post("/v1/targets", json=scaling_target())
    http.post("/v1/targets", json=scaling_target("api", entity="api-vm"))
    r = http.get("/v1/keda/web")
    assert r.status_code == 404 and "no valid decision yet" in r.json()["detail"]
    decisions.decide_all(store, now)

    keda = anon.get("/v1/keda/web", headers=bearer("read")).json()
    assert keda["desiredReplicas"] == 4 and keda["valid"] and not keda["stale"]
    assert anon.get("/v1/keda/web").status_code == 401
    assert http.get("/v1/keda/nope").status_code == 404

    disc = http.get(EXT).json()
    assert disc["kind"] == "APIResourceList" and disc["groupVersion"] == EXT[6:]
    body = http.get(f"{EXT}/namespaces/default/tidewise-desired-replicas").json()
    assert body["kind"] == "ExternalMetricValueList"
    assert body["apiVersion"] == "external.metrics.k8s.io/v1beta1"
    # api: 1 core / 2 per replica -> ceil(0.5) = 1 replica; web: 4
    assert [(i["metricLabels"], i["value"]) for i in body["items"]] == [
        ({"target": "api"}, "1"), ({"target": "web"}, "4")
    ]
    item = body["items"][1]
    assert item["metricName"] == "tidewise-desired-replicas"
    assert item["timestamp"].endswith("Z")
    one = http.get(f"{EXT}/namespaces/prod/tidewise-desired-replicas",
                   params={"labelSelector": "target=web"}).json()
    assert [i["value"] for i in one["items"]] == ["4"]
    r = http.get(f"{EXT}/namespaces/prod/tidewise-desired-replicas",
                 params={"labelSelector": "target!=web"})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "labelSelector"
    r = http.get(f"{EXT}/namespaces/prod/cpu")
    assert r.status_code == 404 and "tidewise-desired-replicas" in r.json()["detail"]
