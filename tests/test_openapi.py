"""/openapi.json describes exactly the routes the service has, and live answers fit it."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest
from flask import Flask
from flask.testing import FlaskClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conftest import create_qr, fill, guest
from tests.live import user_token

PAGE_ENDPOINTS = {"static"}


def spec(client: FlaskClient) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json or {}
    return document


def test_document_is_openapi_3_1(client: FlaskClient) -> None:
    document = spec(client)
    assert document["openapi"].startswith("3.1")
    for schema in document["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_the_binding_cookie_is_declared(client: FlaskClient) -> None:
    """A client generated from the spec knows the binding cookie under both its names, as
    a cookie its jar keeps: not as a parameter, which it would send a second time."""
    document = spec(client)
    schemes = document["components"]["securitySchemes"]
    assert {(s["in"], s["name"]) for s in schemes.values() if s["type"] == "apiKey"} >= {
        ("cookie", "qrlogin_bind"),
        ("cookie", "__Host-qrlogin_bind"),
    }
    paths = document["paths"]
    bound: list[dict[str, list[str]]] = [{"bindCookie": []}, {"bindCookieHttps": []}]
    for path, method in (
        ("/v1/accounts/qrcode/{qr_id}/events", "get"),
        ("/v1/accounts/qrcode/events", "get"),
        ("/v1/passport/guest", "post"),
    ):
        operation = paths[path][method]
        assert operation["security"] == bound, path
        assert not [p for p in operation.get("parameters", []) if p["in"] == "cookie"], path
    # Creating needs none: the first create sets it.
    assert paths["/v1/accounts/qrcode/"]["post"]["security"] == [{}, *bound]
    created = paths["/v1/accounts/qrcode/"]["post"]["responses"]["201"]
    assert "Set-Cookie" in created["headers"]
    stream = paths["/v1/accounts/qrcode/{qr_id}/events"]["get"]["responses"]["200"]
    item = stream["content"]["text/event-stream"]["x-itemSchema"]
    assert item == {"$ref": "#/components/schemas/StatusEvent"}


def test_every_route_is_documented_and_every_path_exists(app: Flask, client: FlaskClient) -> None:
    documented = {
        (path, method.upper())
        for path, operations in spec(client)["paths"].items()
        for method in operations
    }
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PAGE_ENDPOINTS or rule.endpoint.startswith("pages."):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        routed |= {(path, m) for m in rule.methods or () if m not in {"HEAD", "OPTIONS"}}
    assert routed == documented


def validator_for(document: dict[str, Any], path: str, method: str, status: int) -> Any:
    """A JSON Schema validator for one documented answer; KeyError when undocumented."""
    response = document["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = response["content"]["application/json"]["schema"]
    # The spec lets answers gain fields (its compatibility policy); the service's own
    # answers must have none the spec does not name.
    document = _closed(document)
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:qrlogin", resource)
    return jsonschema.Draft202012Validator(_rebase(_closed(schema)), registry=registry)


def _closed(schema: Any) -> Any:
    """``schema`` with every object that names its properties closed to others."""
    if isinstance(schema, dict):
        closed = {k: _closed(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            closed["additionalProperties"] = False
        return closed
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


def _rebase(schema: Any) -> Any:
    """Point the document's local $refs at the registered document."""
    if isinstance(schema, dict):
        return {
            k: ("urn:qrlogin" + v if k == "$ref" and v.startswith("#") else _rebase(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_rebase(v) for v in schema]
    return schema


@pytest.mark.parametrize("engine", ["redis"])
def test_live_answers_match_the_schemas(app: Flask, client: FlaskClient, engine: str) -> None:
    document = spec(client)
    token = user_token(avatar="https://example.com/a.png")

    def check(path: str, method: str, response: Any) -> None:
        validator_for(document, path, method, response.status_code).validate(response.json)

    created = client.post("/v1/accounts/qrcode/", json={"platform": "web"})
    check("/v1/accounts/qrcode/", "post", created)
    qr_id = created.json["data"]["id"]
    broken = {**(created.json or {}), "data": {**created.json["data"], "expire": "soon"}}
    assert not validator_for(document, "/v1/accounts/qrcode/", "post", 201).is_valid(broken)
    check("/v1/passport/guest", "post", guest(client, qr_id))
    check("/v1/accounts/qrcode_fill", "post", fill(client, token, qr_id, "SCAN"))
    check("/v1/accounts/qrcode_fill", "post", fill(client, token, qr_id, "CANCEL"))
    check("/v1/accounts/qrcode_fill", "post", fill(client, token, qr_id, "SCAN"))  # 409
    qr_id = create_qr(client)["id"]
    fill(client, token, qr_id, "SCAN")
    fill(client, token, qr_id, "VERIFY")
    redeemed = guest(client, qr_id)
    assert "token" in redeemed.json["data"]
    check("/v1/passport/guest", "post", redeemed)
    check("/v1/passport/guest", "post", guest(client, qr_id))
    check("/v1/passport/guest", "post", guest(app.test_client(), qr_id))  # 403
    check("/v1/passport/guest", "post", guest(client, "A" * 32))  # 404
    check("/v1/passport/me", "get", client.get("/v1/passport/me"))
    check("/v1/passport/me", "get", app.test_client().get("/v1/passport/me"))  # 401
    check("/v1/accounts/qrcode_fill", "post", fill(client, "bad", qr_id, "SCAN"))  # 401
    check("/healthz", "get", client.get("/healthz"))
    check("/readyz", "get", client.get("/readyz"))
