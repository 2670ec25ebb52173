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
from tests.conftest import SECRET, svc

#: Examples per operation: enough to find a 500, few enough for CI (seconds, not minutes).
EXAMPLES = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
def limits_on_app(redis_url: str) -> Flask:
    app = create_app(
        {"SECRET_KEY": SECRET, "REDIS_URL": redis_url, "QRLOGIN_MAX_LIVE_QRS": "10000"}
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


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_generated_requests(api_schema: Any, path: str, method: str) -> None:
    operation = api_schema[path][method]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any) -> None:
        case.call_and_validate(checks=CHECKS)

    run()
