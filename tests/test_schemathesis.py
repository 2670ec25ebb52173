"""Hostile input generated from /openapi.json: no 500, no answer that breaks the document."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from qrlogin import create_app
from qrlogin.openapi import PATHS
from tests.conftest import svc
from tests.live import SECRET

#: Examples per operation: enough to find a 500, few enough for CI (seconds, not minutes).
EXAMPLES = 60
INTROSPECT_KEY = "introspect-key-0123456789abcdef"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def limits_on_app(redis_url: str) -> Flask:
    app = create_app(
        {
            "SECRET_KEY": SECRET,
            "REDIS_URL": redis_url,
            "QRLOGIN_MAX_LIVE_QRS": "10000",
            "QRLOGIN_INTROSPECT_KEY": INTROSPECT_KEY,
        }
    )
    svc(app).redis.flushdb()
    return app


@pytest.fixture
def api_schema(limits_on_app: Flask) -> Any:
    return schemathesis.openapi.from_wsgi("/openapi.json", limits_on_app)


OPERATIONS = [
    (path, method.upper())
    for path, operations in PATHS.items()
    for method in operations
    if not path.endswith("/events")  # the stream needs gevent: tests/test_stream.py covers it
]


def run_generated(operation: Any, headers: dict[str, str] | None = None) -> None:
    """Generated requests for one operation (with ``headers`` added), checked."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        if headers:
            case.headers = {**(case.headers or {}), **headers}
        case.call_and_validate(checks=CHECKS)

    run()


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_generated_requests(api_schema: Any, path: str, method: str) -> None:
    run_generated(api_schema[path][method])


#: Operations that need a bearer credential, and which: generated requests with a valid
#: one reach past the 401 into the operation itself. (The binding cookie's calls are
#: fuzzed without one above, and with one in the flow tests.)
CREDENTIALS = {"userToken": "user", "loginToken": "login", "introspectKey": "introspect"}
AUTHORIZED = [
    (path, method.upper(), CREDENTIALS[scheme])
    for path, operations in PATHS.items()
    for method, operation in operations.items()
    for scheme in [next(iter(operation.get("security", [{}])[0]), None)]
    if scheme in CREDENTIALS and not path.endswith("/events")
]


def credential(app: Flask, kind: str) -> str:
    if kind == "user":
        return svc(app).tokens.mint_user("u-fuzz", "Fuzz")
    if kind == "introspect":
        return INTROSPECT_KEY
    browser = app.test_client()
    qr_id = browser.post("/v1/accounts/qrcode/", json={"platform": "web"}).json["data"]["id"]
    user = {"Authorization": "Bearer " + svc(app).tokens.mint_user("u-fuzz", "Fuzz")}
    for step in ("SCAN", "VERIFY"):
        browser.post("/v1/accounts/qrcode_fill", json={"id": qr_id, "step": step}, headers=user)
    token: str = browser.post("/v1/passport/guest", json={"code": qr_id}).json["data"]["token"]
    return token


@pytest.mark.parametrize(("path", "method", "kind"), AUTHORIZED)
def test_generated_requests_with_credentials(
    api_schema: Any, limits_on_app: Flask, path: str, method: str, kind: str
) -> None:
    secret = credential(limits_on_app, kind)
    run_generated(api_schema[path][method], {"Authorization": f"Bearer {secret}"})
