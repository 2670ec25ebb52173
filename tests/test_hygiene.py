"""Headers, cookies, the Origin check and CORS."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from qrlogin import create_app
from tests.conftest import create_qr, fill, guest
from tests.live import user_token


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/"), ("GET", "/m"), ("GET", "/app"), ("GET", "/healthz"), ("GET", "/readyz"),
        ("GET", "/openapi.json"), ("GET", "/nowhere"),
        ("POST", "/v1/passport/guest"),
    ],
)  # fmt: skip
def test_every_answer_is_no_store_and_no_referrer(
    client: FlaskClient, method: str, path: str
) -> None:
    response = client.open(path, method=method, json={} if method == "POST" else None)
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize("path", ["/", "/m", "/app"])
def test_pages_have_a_content_security_policy(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert "<script>" not in response.get_data(as_text=True)  # no inline scripts to allow


def test_cookies_are_http_only_lax_and_secure_over_https(app: Flask) -> None:
    browser = app.test_client()
    qr_id = browser.post(
        "/v1/accounts/qrcode/", json={"platform": "web"}, base_url="https://login.example.com"
    ).json["data"]["id"]
    bind = browser.get_cookie("__Host-qrlogin_bind", domain="login.example.com")
    assert bind is not None and bind.http_only and bind.secure and bind.same_site == "Lax"
    token = user_token()
    fill(app.test_client(), token, qr_id, "SCAN")
    fill(app.test_client(), token, qr_id, "VERIFY")
    browser.post("/v1/passport/guest", json={"code": qr_id}, base_url="https://login.example.com")
    session = browser.get_cookie("__Host-qrlogin_session", domain="login.example.com")
    assert session is not None and session.http_only and session.secure
    assert session.same_site == "Lax"


def test_foreign_origin_posts_are_refused(client: FlaskClient) -> None:
    qr_id = create_qr(client)["id"]
    for path, body in (
        ("/v1/accounts/qrcode/", {"platform": "web"}),
        ("/v1/passport/guest", {"code": qr_id}),
    ):
        response = client.post(path, json=body, headers={"Origin": "https://evil.example"})
        assert response.status_code == 403 and response.json["code"] == "ORIGIN_FORBIDDEN"
        assert "Access-Control-Allow-Origin" not in response.headers
    same = client.post(
        "/v1/passport/guest", json={"code": qr_id}, headers={"Origin": "http://localhost"}
    )
    assert same.status_code == 200
    assert guest(client, qr_id).status_code == 200  # no Origin: a phone or a server


def test_allowed_origin_gets_cors_with_credentials(env: dict[str, str]) -> None:
    env["QRLOGIN_CORS_ORIGINS"] = "https://shop.example, https://admin.example:8443"
    client = create_app(env).test_client()
    origin = {"Origin": "https://shop.example"}
    preflight = client.options(
        "/v1/accounts/qrcode/",
        headers={**origin, "Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "content-type"},
    )  # fmt: skip
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert preflight.headers["Access-Control-Allow-Credentials"] == "true"
    created = client.post("/v1/accounts/qrcode/", json={"platform": "web"}, headers=origin)
    assert created.status_code == 201
    assert created.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    assert created.headers["Access-Control-Allow-Credentials"] == "true"
    assert "Origin" in created.headers.get("Vary", "")
    refused = client.post(
        "/v1/accounts/qrcode/", json={"platform": "web"}, headers={"Origin": "https://evil.example"}
    )
    assert refused.status_code == 403


def test_cors_origins_are_validated(env: dict[str, str]) -> None:
    from qrlogin.exceptions import ConfigError

    env["QRLOGIN_CORS_ORIGINS"] = "*"
    with pytest.raises(ConfigError, match="QRLOGIN_CORS_ORIGINS"):
        create_app(env)
