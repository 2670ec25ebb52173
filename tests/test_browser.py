"""What a person sees, in real headless Chromium: the SDK, the pages and the phone stand-in."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from servers.service import Service
from tests.live import (
    ARTIFACTS,
    DEMO_ALICE,
    SECRET,
    confirm_and_land,
    demo_service,
    end_session_on_phone,
    margin,
    open_login,
    paste_qr,
    phone_signed_in,
    phone_step,
    read_qr,
    shot,
    user_token,
)

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("query", "transport"), [("", "shared"), ("?share=off", "sse")])
def test_login_over_sse(page: Page, service: Service, query: str, transport: str) -> None:
    """Over the stream the browser's tabs share (the default), and over the QR's own."""
    qr = open_login(page, service, query)
    assert qr["prefix"] == "rk://scanforpclogin/" and qr["platform"] == "Rxx_PC"
    expect(page.locator("#qrlogin")).to_have_attribute("data-transport", transport)
    expect(page.locator(".qrlogin-open-app")).to_be_hidden()  # not on a desktop
    expect(page.locator(".qrlogin-countdown")).to_contain_text(":")
    expect(page.locator(".qrlogin-status")).to_have_attribute("aria-live", "polite")
    shot(page, "login-waiting")
    confirm_and_land(page, service, qr["id"], screenshots=True)
    shot(page, "app")


@pytest.mark.parametrize("how", ["transport=poll", "no EventSource"])
def test_login_over_the_long_poll(chromium: Browser, service: Service, how: str) -> None:
    context = chromium.new_context()
    page = context.new_page()
    if how == "no EventSource":
        page.add_init_script("delete window.EventSource;")
    qr = open_login(page, service, "?transport=poll" if how == "transport=poll" else "")
    expect(page.locator("#qrlogin")).to_have_attribute("data-transport", "poll")
    confirm_and_land(page, service, qr["id"])
    context.close()


def test_mobile_stand_in_logs_in_another_browser(chromium: Browser, service: Service) -> None:
    desktop = chromium.new_context()
    login = desktop.new_page()
    qr = open_login(login, service)
    phone, mobile = phone_signed_in(chromium, service)
    paste_qr(mobile, qr)
    requester = mobile.locator("#requester")
    expect(requester).to_contain_text("HeadlessChrome")
    expect(requester).to_contain_text("location unknown (127.0.0.1)")
    expect(requester).to_contain_text("Rxx_PC")
    expect(requester).to_contain_text("s ago")
    expect(mobile.locator("#network-warning")).to_be_hidden()  # the same address
    expect(mobile.locator("#requester-agent")).to_be_hidden()  # behind "Details"
    approve, reject = mobile.locator("#approve"), mobile.locator("#reject")
    assert approve.bounding_box()["width"] == reject.bounding_box()["width"]
    shot(mobile, "mobile")
    expect(login.locator(".qrlogin-name")).to_have_text("Alice Example")
    approve.click()
    expect(mobile.locator("#announce")).to_contain_text("Confirmed")
    login.wait_for_url("**/app")
    expect(login.locator("#user-name")).to_have_text("Alice Example")
    desktop.close()
    phone.close()


def test_the_stand_in_warns_of_a_request_from_another_network(
    chromium: Browser, redis_url: str, server_logs: Path
) -> None:
    """A relayed QR: the browser in Germany, the phone in Britain (their addresses as a
    trusted proxy reports them)."""
    relayed = demo_service(redis_url, server_logs, QRLOGIN_TRUSTED_PROXIES="1")
    try:
        desktop = chromium.new_context(extra_http_headers={"X-Forwarded-For": "195.201.0.1"})
        login = desktop.new_page()
        qr = open_login(login, relayed)
        phone = chromium.new_context(
            viewport={"width": 390, "height": 844},
            is_mobile=True,
            extra_http_headers={"X-Forwarded-For": "81.2.69.160"},
        )
        mobile = phone.new_page()
        mobile.goto(relayed.url + "/m")
        mobile.get_by_role("button", name="Alice Example").click()
        paste_qr(mobile, qr)
        warning = mobile.get_by_role("alert")
        expect(warning).to_have_text(
            "This request comes from another network, in Germany. "
            "Your phone's network is in United Kingdom."
        )
        expect(mobile.locator("#requester")).to_contain_text("Germany (195.201.0.1)")
        agent = mobile.locator("#requester-agent")
        expect(agent).to_be_hidden()
        mobile.get_by_text("Details").click()
        expect(agent).to_contain_text("HeadlessChrome")
        shot(mobile, "mobile-other-network")
        desktop.close()
        phone.close()
    finally:
        relayed.stop()


def test_ending_the_session_on_the_phone_takes_the_page_back_to_login(
    page: Page, service: Service
) -> None:
    qr = open_login(page, service)
    confirm_and_land(page, service, qr["id"])
    sid = page.locator("#session-id").text_content()
    assert sid
    page.wait_for_timeout(300)  # the page's session stream is open
    sent = time.monotonic()
    assert end_session_on_phone(service.url, user_token(*DEMO_ALICE), sid).status_code == 200
    page.wait_for_url(service.url + "/", timeout=margin(10) * 1000)
    took = time.monotonic() - sent
    print(f"revocation to the login page: {took * 1000:.0f} ms")
    assert took < margin(1.0)
    expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_WAIT")
    # The old session is over for the server too.
    assert page.request.get(service.url + "/app").status == 401


def test_the_stand_in_lists_sessions_hears_new_logins_and_ends_them(
    chromium: Browser, service: Service
) -> None:
    phone, mobile = phone_signed_in(chromium, service)
    expect(mobile.locator("#session-list")).to_contain_text("Nowhere right now.")
    desktop = chromium.new_context()
    login = desktop.new_page()
    qr = open_login(login, service)
    confirm_and_land(login, service, qr["id"])
    notice = mobile.locator("#notices li").first
    expect(notice).to_contain_text("New login: HeadlessChrome")
    item = mobile.locator("#session-list li").first
    expect(item).to_contain_text("(127.0.0.1)")
    shot(mobile, "mobile-sessions")
    item.get_by_role("button").click()
    login.wait_for_url(service.url + "/")
    expect(mobile.locator("#notices li").first).to_contain_text("Logged out: HeadlessChrome")
    expect(mobile.locator("#session-list")).to_contain_text("Nowhere right now.")
    desktop.close()
    phone.close()


def test_logout_on_the_page(page: Page, service: Service) -> None:
    qr = open_login(page, service)
    confirm_and_land(page, service, qr["id"])
    expect(page.locator("#session-device")).to_contain_text("127.0.0.1")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(service.url + "/")
    assert page.request.get(service.url + "/v1/passport/me").status == 401


def test_cancel_on_the_phone_shows_the_cancel_state(page: Page, service: Service) -> None:
    qr = open_login(page, service)
    token = user_token(*DEMO_ALICE)
    phone_step(service.url, token, qr["id"], "SCAN")
    phone_step(service.url, token, qr["id"], "CANCEL")
    expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_CANCEL")
    expect(page.locator(".qrlogin-status")).to_have_text("The login was cancelled on the phone.")
    expect(page.locator(".qrlogin-refresh")).to_be_visible()


def test_refreshing_a_live_qr_replaces_it(page: Page, service: Service) -> None:
    old = open_login(page, service)
    page.evaluate("window.qrlogin.refresh()")
    expect(page.locator("#qrlogin")).not_to_have_attribute("data-qr-id", old["id"])
    new = read_qr(page)
    answer = page.request.post(service.url + "/v1/passport/guest", data={"code": old["id"]})
    assert answer.json()["data"]["status"] == "QRCODE_ERROR"
    assert answer.json()["data"]["reason"] == "replaced"
    confirm_and_land(page, service, new["id"])


def test_expiry_offers_refresh_and_the_new_qr_works(
    chromium: Browser, redis_url: str, server_logs: Path
) -> None:
    short = demo_service(redis_url, server_logs, QRLOGIN_QR_TTL="3")
    try:
        context = chromium.new_context(viewport={"width": 900, "height": 760})
        page = context.new_page()
        old = open_login(page, short)
        expect(page.locator("#qrlogin")).to_have_attribute(
            "data-status", "QRCODE_EXPIRE", timeout=8000
        )
        refresh = page.get_by_role("button", name="QR expired, click to refresh")
        expect(refresh).to_be_visible()
        expect(page.locator(".qrlogin-status")).to_have_text("The QR code expired.")
        shot(page, "login-expired")
        refresh.click()
        expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_WAIT")
        new = read_qr(page)
        assert new["id"] != old["id"]
        # An expired QR stays expired (the contract ignores an expired code on regeneration).
        answer = page.request.post(short.url + "/v1/passport/guest", data={"code": old["id"]})
        assert answer.json()["data"]["status"] == "QRCODE_EXPIRE"
        token = user_token(*DEMO_ALICE)
        assert phone_step(short.url, token, new["id"], "SCAN").status_code == 200
        assert phone_step(short.url, token, new["id"], "VERIFY").status_code == 200
        page.wait_for_url("**/app")
        context.close()
    finally:
        short.stop()


SEED_SNIPPET = """
async () => {
  const res = await (await fetch("/v1/accounts/qrcode/", {method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({platform: "Rxx_PC"})})).json();
  const qrcodeUrl = "data:image/png;base64," + res.data.png;
  const image = new Image();
  image.src = qrcodeUrl;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width; canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const pixels = context.getImageData(0, 0, canvas.width, canvas.height);
  const result = jsQR(pixels.data, pixels.width, pixels.height).data;
  return {parsed: JSON.parse(result), data: res.data};
}
"""


def test_seed_front_end_decodes_and_parses_unchanged(page: Page, service: Service) -> None:
    page.goto(service.url + "/m")  # a page that ships the jsQR decoder
    out = page.evaluate(SEED_SNIPPET)
    parsed, data = out["parsed"], out["data"]
    assert parsed == {
        "id": data["id"], "expire": data["expire"], "prefix": data["prefix"], "platform": "Rxx_PC"
    }  # fmt: skip
    assert list(parsed) == ["id", "expire", "prefix", "platform"]


def test_pages_render_and_app_needs_a_session(page: Page, service: Service) -> None:
    response = page.goto(service.url + "/app")
    assert response is not None and response.status == 401
    expect(page.get_by_role("status")).to_contain_text("missing or has expired")
    page.goto(service.url + "/m")
    expect(page.get_by_role("button", name="Alice Example")).to_be_visible()


def test_stand_in_has_no_demo_sign_in_outside_demo_mode(
    chromium: Browser, redis_url: str, server_logs: Path
) -> None:
    plain = Service({"SECRET_KEY": SECRET, "REDIS_URL": redis_url}, server_logs).start()
    try:
        context = chromium.new_context()
        page = context.new_page()
        page.goto(plain.url + "/m")
        expect(page.locator("#token")).to_be_visible()
        assert page.locator("button.user").count() == 0
        context.close()
    finally:
        plain.stop()


def test_stand_in_reads_a_photo_of_the_qr(chromium: Browser, service: Service) -> None:
    desktop = chromium.new_context(viewport={"width": 900, "height": 760})
    login = desktop.new_page()
    qr = open_login(login, service)
    photo = ARTIFACTS / "photo.png"
    login.screenshot(path=str(photo))  # the whole screen, as a phone photographs it
    phone, mobile = phone_signed_in(chromium, service)
    mobile.locator("#photo").set_input_files(str(photo))
    expect(mobile.locator("#requester")).to_contain_text("Rxx_PC")
    mobile.get_by_role("button", name="Confirm").click()
    login.wait_for_url("**/app")
    assert qr["id"]
    desktop.close()
    phone.close()


def test_number_matching_in_the_sdk_and_the_stand_in(
    chromium: Browser, redis_url: str, server_logs: Path
) -> None:
    matching = demo_service(redis_url, server_logs, QRLOGIN_NUMBER_MATCHING="1")
    try:
        desktop = chromium.new_context(viewport={"width": 900, "height": 760})
        login = desktop.new_page()
        qr = open_login(login, matching)
        phone, mobile = phone_signed_in(chromium, matching)
        paste_qr(mobile, qr)
        shown = login.locator(".qrlogin-code")
        expect(shown).to_have_text(re.compile(r"^Type \d\d on your phone$"))
        code = (shown.text_content() or "").split()[1]
        shot(login, "login-number-matching")
        mobile.get_by_label("Type the number shown on the computer").fill(code)
        mobile.get_by_role("button", name="Confirm").click()
        login.wait_for_url("**/app")
        desktop.close()
        phone.close()
    finally:
        matching.stop()
