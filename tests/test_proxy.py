"""The whole flow through a real nginx: create, SSE, long poll, redemption, the page."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import expect

from servers.nginx import BARE, DOCUMENTED, ProxyNginx
from servers.service import Service
from tests.conftest import StartService
from tests.live import PROMPT_S, Browser, margin, phone_step, user_token

pytestmark = pytest.mark.slow


class PageBrowser(Browser):
    """A client that sends Origin on its POSTs, as a browser does on the service's page."""

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self.session.headers["Origin"] = base_url


@pytest.fixture(params=["documented", "bare + public origin"])
def proxied(
    request: pytest.FixtureRequest, start_service: StartService, server_logs: Path
) -> Iterator[tuple[ProxyNginx, Service]]:
    if request.param == "documented":
        nginx = ProxyNginx(DOCUMENTED, server_logs)
        service = start_service(QRLOGIN_TRUSTED_PROXIES="1")
    else:
        nginx = ProxyNginx(BARE, server_logs)
        service = start_service(QRLOGIN_PUBLIC_ORIGIN=nginx.url)
    with nginx.proxy_to(service.port):
        yield nginx, service


def test_full_login_through_nginx(proxied: tuple[ProxyNginx, Service]) -> None:
    nginx, _ = proxied
    browser = PageBrowser(nginx.url)
    token = user_token()

    # SSE through the proxy, event by event.
    qr = browser.create()
    events = browser.stream(qr["id"]).events()
    assert next(events).json["status"] == "QRCODE_WAIT"
    assert phone_step(nginx.url, token, qr["id"], "SCAN").status_code == 200
    assert next(events).json["status"] == "QRCODE_SCANNED"
    assert phone_step(nginx.url, token, qr["id"], "VERIFY").status_code == 200
    assert next(events).json["status"] == "QRCODE_SUCCESS"
    redeemed = browser.guest(qr["id"]).json()["data"]
    assert redeemed["token"]
    me = requests.get(
        nginx.url + "/v1/passport/me",
        headers={"Authorization": f"Bearer {redeemed['token']}"},
        timeout=margin(30),
    )
    assert me.status_code == 200

    # The long poll through the proxy answers on the change, and redeems.
    second = browser.create()
    answered: dict[str, Any] = {}

    def hold() -> None:
        answered["data"] = browser.guest(second["id"], wait=20, since="QRCODE_WAIT").json()
        answered["at"] = time.monotonic()

    poller = threading.Thread(target=hold)
    poller.start()
    time.sleep(0.5)
    sent = time.monotonic()
    assert phone_step(nginx.url, token, second["id"], "SCAN").status_code == 200
    poller.join(margin(30))
    assert answered["data"]["data"]["status"] == "QRCODE_SCANNED"
    assert answered["at"] - sent < margin(PROMPT_S)
    assert phone_step(nginx.url, token, second["id"], "VERIFY").status_code == 200
    assert "token" in browser.guest(second["id"], wait=5).json()["data"]


def test_the_login_page_through_nginx_shows_a_qr(
    proxied: tuple[ProxyNginx, Service], chromium: Chromium
) -> None:
    nginx, _ = proxied
    context = chromium.new_context()
    page = context.new_page()
    page.goto(nginx.url + "/")
    expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_WAIT")
    context.close()


def test_forwarded_headers_are_ignored_without_trusted_proxies(
    start_service: StartService,
) -> None:
    """With QRLOGIN_TRUSTED_PROXIES=0 nothing forwarded counts, gunicorn's own reading of
    X-Forwarded-Proto from 127.0.0.1 included."""
    service = start_service()
    answer = requests.post(
        service.url + "/v1/accounts/qrcode/",
        json={"platform": "web"},
        headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "198.51.100.7"},
        timeout=margin(30),
    )
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith("qrlogin_bind=") and "Secure" not in cookie
    qr_id = answer.json()["data"]["id"]
    scan = phone_step(service.url, user_token(), qr_id, "SCAN")
    assert scan.json()["data"]["client"]["ip"] == "127.0.0.1"
