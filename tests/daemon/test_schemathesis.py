"""Property-based requests from the OpenAPI spec against the live app: the spec tells the truth.

Schemathesis generates requests for every operation of the served ``/openapi.json`` and sends
them over real HTTP to the app under uvicorn, with the conformance checks on: every status
code answered is documented for the operation (``status_code_conformance``), every body matches
the documented schema and media type (``response_schema_conformance``,
``content_type_conformance``), documented headers are present (``response_headers_conformance``),
nothing is a 5xx (``not_a_server_error``), invalid input is refused with a 4xx
(``negative_data_rejection``) and a route declaring a token refuses requests without one
(``ignored_auth``). Three callers per operation: the all-scopes token (valid and invalid
data), no token (401), and a token lacking the operation's scope (403), so the documented
401/403 answers are exercised too.

Bounded: a few examples per operation and mode, derandomized, so the test takes well under a
minute on two cores.
"""

from __future__ import annotations

import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    FailureGroup,
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service import decisions
from tests.daemon.conftest import bearer, scaling_target, send

EXAMPLES_PER_OPERATION = 6
CONFORMANCE = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
#: Who calls, with which checks on top of :data:`CONFORMANCE`.
CALLERS = {
    "valid data, all scopes": (GenerationMode.POSITIVE, bearer("all"), [ignored_auth]),
    "invalid data, all scopes": (GenerationMode.NEGATIVE, bearer("all"), [negative_data_rejection]),
    "no token": (GenerationMode.POSITIVE, {}, []),
}


def _wrong_scope(op) -> dict[str, str]:  # noqa: ANN001
    """A token without the scope ``op`` needs (every operation needs one scope)."""
    path, method = op.path, op.method.upper()
    if method == "GET":
        return bearer("ingest")  # reads need `read`
    if path in ("/v1/metrics", "/api/v1/write"):
        return bearer("read")
    return bearer("read")  # POST/DELETE targets and acks need `act`


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_the_live_api_conforms_to_its_openapi(http, live_url, store):
    now = int(time.time())
    send(http, "web-vm", "vm", "cpu_cores", [(now - 120 + i, 3.0) for i in range(120)])
    assert http.post("/v1/targets", json=scaling_target()).status_code == 201
    decisions.decide_all(store, now)  # so recommendations and KEDA answer 200 too
    schema = schemathesis.openapi.from_url(f"{live_url}/openapi.json")
    # Unknown query parameters are ignored, as most HTTP APIs do (KEDA and the HPA may add
    # their own): not a defect for negative_data_rejection to report.
    schema.config.generation.update(allow_extra_parameters=False)
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 15  # every route is in the spec
    failures: list[str] = []
    skipped: list[str] = []
    calls: dict[str, set[int]] = {}
    for op in operations:
        if _only_binary_bodies(op):  # remote-write protobuf: fuzzed by its own tests
            skipped.append(op.label)
            continue
        callers = dict(CALLERS)
        callers["token without the scope"] = (GenerationMode.POSITIVE, _wrong_scope(op), [])
        for who, (mode, headers, extra) in callers.items():
            _exercise(op, mode, headers, CONFORMANCE + extra, who, failures, calls)
    distinct = sorted(set(failures))
    assert not distinct, f"{len(distinct)} distinct failures:\n" + "\n".join(distinct[:60])
    assert len(skipped) <= 1, skipped
    exercised = {op.label for op in operations} - set(skipped)
    assert set(calls) == exercised  # each operation was called
    seen = set().union(*calls.values())
    assert {200, 401, 403, 404, 422} <= seen, seen  # the documented errors were met


def _exercise(op, mode, headers, checks, who, failures, calls) -> None:  # noqa: ANN001
    label = op.label

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def check(case) -> None:  # noqa: ANN001
        try:
            response = case.call_and_validate(headers=headers, checks=checks, timeout=30)
        except FailureGroup as group:  # reported together below, one line per kind
            for failure in group.exceptions:
                first = str(failure).strip().splitlines()
                failures.append(f"{label} [{who}]: {failure.title}: {' / '.join(first[:8])}")
            return
        calls.setdefault(label, set()).add(response.status_code)

    try:
        check()
    except Unsatisfiable:  # no parameter or body to make invalid (e.g. GET /healthz)
        assert mode is GenerationMode.NEGATIVE, label


def _only_binary_bodies(op) -> bool:  # noqa: ANN001
    """True when every request body media type of ``op`` is one schemathesis cannot write."""
    bodies = op.definition.raw.get("requestBody", {}).get("content", {})
    return bool(bodies) and all("protobuf" in m or "snappy" in m for m in bodies)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_every_secured_operation_documents_its_auth_and_error_bodies(settings):
    """Static check of the spec, remote-write included (which schemathesis cannot write)."""
    from service.api import create_app

    spec = create_app(settings).openapi()
    assert "HTTPValidationError" not in spec["components"]["schemas"]  # our 422 shape only
    for path, item in spec["paths"].items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            responses = op["responses"]
            if op.get("security"):
                assert {"401", "403"} <= set(responses), where
                for code in ("401", "403"):
                    schema = responses[code]["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/AuthErrorOut"}, where
                    assert "WWW-Authenticate" in responses[code]["headers"], where
            if "requestBody" in op:
                assert {"413", "503"} <= set(responses), where
            for code, response in responses.items():
                if code.startswith("4") and code not in ("401", "403"):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorOut"}, (where, code)
