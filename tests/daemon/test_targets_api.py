"""Declaring targets: create/replace/list/delete over HTTP, and clear 422s."""

from __future__ import annotations

import pytest

from tests.daemon.conftest import bearer, scaling_target

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def test_declare_replace_list_delete(http):
    r = http.post("/v1/targets", json=scaling_target())
    assert r.status_code == 201 and r.json() == {"name": "web", "created": True}
    r = http.post("/v1/targets", json=scaling_target(max_replicas=30))
    assert r.status_code == 200 and r.json()["created"] is False
    listed = http.get("/v1/targets").json()["targets"]
    assert [(t["name"], t["kind"], t["max_replicas"], t["capacity"]) for t in listed] == [
        ("web", "scaling", 30, 2.0)
    ]
    one = http.get("/v1/targets/web").json()
    assert one["params"] == {"target": 1.0, "tolerance": 0.0} and one["boot_s"] == 30
    assert http.delete("/v1/targets/web").status_code == 204
    assert http.get("/v1/targets").json() == {"targets": []}
    r = http.delete("/v1/targets/web")
    assert r.status_code == 404 and "'web'" in r.json()["detail"]


def test_bayes_gets_the_declared_sla(http):
    body = scaling_target(policy="bayes", params={}, target_violation=0.05)
    assert http.post("/v1/targets", json=body).status_code == 201
    assert http.get("/v1/targets/web").json()["params"] == {"target_violation": 0.05}


def test_changing_targets_needs_the_act_scope(anon):
    assert anon.post("/v1/targets", json=scaling_target()).status_code == 401
    r = anon.post("/v1/targets", json=scaling_target(), headers=bearer("read"))
    assert r.status_code == 403 and r.json()["scope"] == "act"
    assert anon.post("/v1/targets", json=scaling_target(), headers=bearer("act")).status_code == 201
    assert anon.get("/v1/targets", headers=bearer("act")).status_code == 403
    assert anon.delete("/v1/targets/web", headers=bearer("read")).status_code == 403


@pytest.mark.parametrize(
    ("body", "where", "phrase"),
    [
        (scaling_target(min_replicas=5, max_replicas=2), "",
         "min_replicas: 5 must not exceed max_replicas (2)"),
        (scaling_target(capacity=0), "capacity", "greater than 0"),
        (scaling_target(policy="nope"), "", "policy: no policy 'nope' for scenario 'vm'"),
        (scaling_target(policy="oracle", params={}), "", "reads the future"),
        (scaling_target(params={"targett": 1}), "",
         "params: policy 'hpa' has no parameter(s) ['targett']"),
        (scaling_target(name="bad name"), "name", "pattern"),
        ({**scaling_target(), "kind": "database"}, "", "scaling"),
        ({k: v for k, v in scaling_target().items() if k != "entity"}, "entity", "Field required"),
        ({"kind": "power", "name": "row", "servers": ["a", "a"], "budget_w": 100,
          "p_max_w": 300}, "", "listed twice"),
        ({"kind": "power", "name": "row", "servers": ["a"], "budget_w": 100, "p_max_w": 300,
          "priorities": {"b": "low"}}, "", "not in servers"),
        ({"kind": "serverless", "name": "f", "entity": "f", "memory_mb": -1,
          "duration_ms": 10}, "memory_mb", "greater than 0"),
        ({**scaling_target(), "extra": 1}, "extra", "Extra inputs"),
    ],
)
def test_bad_targets_get_422_naming_the_field(http, body, where, phrase):
    r = http.post("/v1/targets", json=body)
    assert r.status_code == 422, r.text
    err = r.json()
    assert phrase in err["detail"] or any(phrase in p["message"] for p in err["problems"])
    if where:
        assert any(where in (p["field"] or "") for p in err["problems"]), err
    assert http.get("/v1/targets").json() == {"targets": []}
