"""The session cookie over HTTPS cannot be planted from a sibling subdomain, and HTTPS
answers carry HSTS: Chromium on two host names of one site, against gunicorn serving
TLS."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from servers.redis_server import TLSFiles
from servers.service import Service
from tests.conftest import StartService
from tests.live import CHROMIUM, CHROMIUM_ARGS, margin, phone_step, user_token
from tests.live import Browser as Client

pytestmark = pytest.mark.slow

#: The login service and a sibling host of the same site (an attacker's page there).
LOGIN, SIBLING = "login.example.test", "evil.example.test"


@pytest.fixture(scope="module")
def chromium_for_the_site() -> Iterator[Browser]:
    """Chromium that finds both host names on loopback."""
    if CHROMIUM is None:
        pytest.fail("Chromium is needed for the browser tests: apt-get install chromium")
    rules = f"--host-resolver-rules=MAP {LOGIN} 127.0.0.1, MAP {SIBLING} 127.0.0.1"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, rules]
        )
        yield browser
        browser.close()


@pytest.fixture
def tls_service(start_service: StartService, trust: TLSFiles) -> Service:
    return start_service(tls=trust, QRLOGIN_DEMO="1", QRLOGIN_RATE_LIMITS="off")


def login_token_of(service: Service, user: str) -> str:
    """A login of ``user``, done by a client of their own: its token."""
    client = Client(service.url)
    qr = client.create()
    token = user_token(user, user.title())
    for step in ("SCAN", "VERIFY"):
        assert phone_step(service.url, token, qr["id"], step).status_code == 200
    found: str = client.guest(qr["id"]).json()["data"]["token"]
    return found


def plant(context: BrowserContext, port: int, token: str) -> None:
    """The sibling's page sets a session cookie for the whole site."""
    page = context.new_page()
    page.goto(f"https://{SIBLING}:{port}/healthz")
    page.evaluate(
        "token => { document.cookie = "
        "`qrlogin_session=${token}; domain=example.test; path=/; secure; samesite=lax`; }",
        token,
    )
    page.close()


def app_page(context: BrowserContext, port: int) -> tuple[Page, int]:
    page = context.new_page()
    answer = page.goto(f"https://{LOGIN}:{port}/app")
    assert answer is not None
    return page, answer.status


def test_a_planted_session_cookie_logs_nobody_in(
    chromium_for_the_site: Browser, tls_service: Service
) -> None:
    attacker = login_token_of(tls_service, "mallory")
    context = chromium_for_the_site.new_context(ignore_https_errors=True)
    plant(context, tls_service.port, attacker)
    page, status = app_page(context, tls_service.port)
    assert status == 401  # the login page, not the attacker's session
    assert "Mallory" not in page.content()
    context.close()


def test_logout_ends_the_victims_own_session_despite_a_planted_one(
    chromium_for_the_site: Browser, tls_service: Service
) -> None:
    attacker = login_token_of(tls_service, "mallory")
    context = chromium_for_the_site.new_context(ignore_https_errors=True)
    page = context.new_page()
    page.goto(f"https://{LOGIN}:{tls_service.port}/")
    widget = page.locator("#qrlogin")
    widget.wait_for(state="attached")
    # (Not wait_for_function: its polling evaluates a string, which the page's CSP refuses.)
    expect(widget).to_have_attribute("data-qr-id", re.compile(".+"))
    qr_id = widget.get_attribute("data-qr-id")
    assert qr_id
    token = user_token("alice", "Alice")
    for step in ("SCAN", "VERIFY"):
        assert phone_step(tls_service.url, token, qr_id, step).status_code == 200
    page.wait_for_url("**/app")
    names = {c["name"] for c in context.cookies()}
    assert "__Host-qrlogin_session" in names and "qrlogin_session" not in names

    plant(context, tls_service.port, attacker)
    page.locator("#logout").click()
    page.wait_for_url(f"https://{LOGIN}:{tls_service.port}/")
    # Alice's session ended; Mallory's did not.
    sessions = requests.get(
        tls_service.url + "/v1/accounts/sessions",
        headers={"Authorization": f"Bearer {token}"},
        timeout=margin(30),
    ).json()["data"]["sessions"]
    assert sessions == []
    mine = requests.get(
        tls_service.url + "/v1/passport/me",
        headers={"Authorization": f"Bearer {attacker}"},
        timeout=margin(30),
    )
    assert mine.status_code == 200
    context.close()


def test_https_answers_carry_hsts(start_service: StartService, trust: TLSFiles) -> None:
    service = start_service(tls=trust, QRLOGIN_RATE_LIMITS="off")
    answer = requests.get(service.url + "/healthz", timeout=margin(30))
    assert answer.headers["Strict-Transport-Security"] == "max-age=31536000"
    off = start_service(tls=trust, QRLOGIN_HSTS_MAX_AGE="0", QRLOGIN_RATE_LIMITS="off")
    assert "Strict-Transport-Security" not in requests.get(off.url + "/healthz", timeout=30).headers
    plain = start_service(QRLOGIN_RATE_LIMITS="off")
    assert "Strict-Transport-Security" not in requests.get(plain.url + "/", timeout=30).headers
