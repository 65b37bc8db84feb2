"""The daemon observes the world: an actuator's acknowledgement may carry the replica counts.

``POST /v1/actions/{id}/ack`` takes an optional ``{"applied": n, "ready": m}``; the scaling
collector (:func:`service.decisions.collect_vm`) reads the replicas requested and ready from,
in order: the target's metric (a sample at most 600 s old), the newest acknowledgement's
counts (at most 600 s old), and only then its own last recommendation. Over real HTTP, on
SQLite and PostgreSQL.
"""

from __future__ import annotations

import time

from service import decisions
from service.store import targets as target_store
from service.store.tables import ActionRecord
from tests.daemon.conftest import bearer, scaling_target, send


def _flat(now: int, seconds: int, value: float) -> list[tuple[int, float]]:
    return [(now - seconds + i, value) for i in range(seconds)]


def _first_action(http, store, now: int, **target) -> int:  # noqa: ANN001
    """Demand of 7 cores at 2 per replica; the first decision recommends 4 (action 1)."""
    send(http, "web-vm", "vm", "cpu_cores", _flat(now, 600, 7.0))
    assert http.post("/v1/targets", json=scaling_target(**target)).status_code == 201
    (out,) = decisions.decide_all(store, now)
    assert out.desired == {"replicas": 4} and out.action_id is not None
    return out.action_id


def _add_action(store, target: str, kind: str, now: int) -> int:  # noqa: ANN001
    """An action logged directly (another target kind, or a later change of ``target``)."""
    with store.write_sessions() as session, session.begin():
        row = ActionRecord(target=target, kind=kind, created_at=now, desired={}, why="test")
        session.add(row)
        session.flush()
        return int(row.id)


def test_an_ack_stores_the_counts_and_a_later_ack_updates_them(http, store):  # noqa: ANN001
    now = int(time.time())
    aid = _first_action(http, store, now)

    first = http.post(f"/v1/actions/{aid}/ack", json={"applied": 4, "ready": 2})
    assert first.status_code == 200, first.text
    a = first.json()
    assert (a["acked"], a["acked_by"], a["applied"], a["ready"]) == (True, "admin", 4, 2)
    assert abs(a["counts_at_unix"] - time.time()) < 60 and a["counts_at"].endswith("Z")

    # progress, reported by another token: the counts change, the first acknowledgement stays
    again = http.post(f"/v1/actions/{aid}/ack", json={"applied": 4, "ready": 4},
                      headers=bearer("act")).json()
    assert (again["acked_at"], again["acked_by"]) == (a["acked_at"], "admin")
    assert (again["applied"], again["ready"]) == (4, 4)
    assert again["counts_at_unix"] >= a["counts_at_unix"]

    # an acknowledgement without a body (as before) or with an empty one leaves them alone
    for kw in ({}, {"json": {}}):
        same = http.post(f"/v1/actions/{aid}/ack", **kw)
        assert same.status_code == 200 and (same.json()["applied"], same.json()["ready"]) == (4, 4)
    # a count left out is stored as unknown: counts are replaced as a pair
    only = http.post(f"/v1/actions/{aid}/ack", json={"ready": 3}).json()
    assert (only["applied"], only["ready"]) == (None, 3)

    (listed,) = http.get("/v1/actions").json()["actions"]
    assert (listed["applied"], listed["ready"]) == (None, 3)


BAD_BODIES = [
    ({"applied": -1}, "applied", "greater than or equal to 0"),
    ({"ready": 100_001}, "ready", "less than or equal to 100000"),
    ({"applied": "5"}, "applied", "valid integer"),
    ({"ready": 2.5}, "ready", "valid integer"),
    ({"applied": 3.0}, "applied", "valid integer"),
    ({"ready": True}, "ready", "valid integer"),
    ({"replicas": 3}, "replicas", "Extra inputs are not permitted"),
]


def test_bad_counts_are_a_422_naming_the_field_and_acknowledge_nothing(http, store):  # noqa: ANN001
    now = int(time.time())
    aid = _first_action(http, store, now)
    for body, field, message in BAD_BODIES:
        r = http.post(f"/v1/actions/{aid}/ack", json=body)
        assert r.status_code == 422, (body, r.text)
        err = r.json()
        assert err["error"] == "RequestValidationError", body
        assert err["problems"][0]["field"] == field, (body, err)
        assert message in err["problems"][0]["message"], (body, err)
        assert err["detail"].startswith(f"{field}: "), (body, err)
    r = http.post(f"/v1/actions/{aid}/ack", json=[4, 2])
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "body"
    # nothing above acknowledged the action
    assert [x["id"] for x in http.get("/v1/actions?pending=true").json()["actions"]] == [aid]

    # counts belong to scaling actions: a power (or serverless) action refuses them
    power = _add_action(store, "row", "power", now)
    r = http.post(f"/v1/actions/{power}/ack", json={"applied": 2})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "applied"
    assert "scaling action" in r.json()["detail"]
    r = http.post(f"/v1/actions/{power}/ack", json={"ready": 2})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "ready"
    assert http.post(f"/v1/actions/{power}/ack").json()["acked"] is True  # without counts: fine
    r = http.post("/v1/actions/999/ack", json={"applied": 1})
    assert r.status_code == 404 and "999" in r.json()["detail"]
    r = http.post(f"/v1/actions/{aid}/ack", json={"applied": 1}, headers=bearer("read"))
    assert r.status_code == 403


def test_collect_vm_takes_the_metric_then_the_ack_then_its_own_recommendation(http, store):  # noqa: ANN001
    now = int(time.time())
    now -= now % 15
    aid = _first_action(http, store, now, ready_metric="ready", requested_metric="requested",
                        replicas_entity="web-deploy")
    with store.sessions() as session:
        target = target_store.get_target(session, "web")
    prev = {"replicas": 4}

    def seen(at: int) -> tuple[int, int, int | None]:
        _, obs, _ = decisions.collect_vm(store, target, at, prev)
        return obs.replicas, obs.ready, (obs.current.replicas if obs.current else None)

    # nothing reported: the daemon assumes its last recommendation
    assert seen(now) == (4, 4, 4)

    ack = http.post(f"/v1/actions/{aid}/ack", json={"applied": 9, "ready": 6}).json()
    t = ack["counts_at_unix"]
    # the acknowledgement's counts: requested 9 (the setting in force), ready 6
    assert seen(t) == (9, 6, 9)
    assert seen(t + 600) == (9, 6, 9)  # still recent
    assert seen(t + 601) == (4, 4, 4)  # too old: back to the last recommendation
    assert seen(t - 1) == (4, 4, 4)  # reported after the moment being decided: not yet known

    # the newest acknowledgement carries no counts: an older action's counts are replaced
    later = _add_action(store, "web", "vm", t)
    assert http.post(f"/v1/actions/{later}/ack").json()["acked"] is True
    assert seen(t + 300) == (4, 4, 4)
    http.post(f"/v1/actions/{later}/ack", json={"applied": 9, "ready": 6})
    assert seen(t + 300) == (9, 6, 9)

    # a recent metric sample wins over the acknowledgement, count by count
    send(http, "web-deploy", "vm", "ready", [(t - 1, 11.0)])
    assert seen(t + 300) == (9, 11, 9)
    send(http, "web-deploy", "vm", "requested", [(t - 1, 12.0)])
    assert seen(t + 300) == (12, 11, 12)
    # samples too old (601 s): the acknowledgement is next (re-sent, so it is recent)
    http.post(f"/v1/actions/{later}/ack", json={"applied": 8, "ready": 7})
    assert seen(t + 600) == (8, 7, 8)


def test_the_decision_reads_the_acknowledged_counts(http, store):  # noqa: ANN001
    """The policy sees the acknowledged setting: HPA scales 9 replicas down to the 4 that
    7 cores need; ignoring the counts it would hold its own 4 (README, section daemon)."""
    now = int(time.time())
    now -= now % 15
    aid = _first_action(http, store, now)
    t = http.post(f"/v1/actions/{aid}/ack", json={"applied": 9, "ready": 9}).json()
    decisions.decide_all(store, t["counts_at_unix"])
    rec = http.get("/v1/recommendations/web").json()
    assert rec["why"].startswith("9 -> 4: "), rec["why"]
    assert rec["desired"] == {"replicas": 4}
