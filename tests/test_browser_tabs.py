"""Many tabs of one browser, and the same device, in real headless Chromium: the tabs
share one stream, hand it over when the tab holding it closes, and a phone's own browser
logs in through "Open in the app"."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect

from servers.service import Service
from tests.live import DEMO_ALICE, demo_service, margin, metric, phone_step, user_token, wait_until

pytestmark = pytest.mark.slow
TABS = 8
PHONE = {
    "viewport": {"width": 393, "height": 851},
    "is_mobile": True,
    "has_touch": True,
    "user_agent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
}


@pytest.fixture
def service(redis_url: str, server_logs: Path) -> Iterator[Service]:
    """A service of this test's own, so that its counts are this browser's alone."""
    started = demo_service(redis_url, server_logs)
    yield started
    started.stop()


def held(service: Service) -> float:
    """Streams and held long polls open in the service (its /metrics)."""
    return metric(service.url, "qrlogin_held_connections")


def open_tabs(context: BrowserContext, service: Service, count: int) -> list[Page]:
    """``count`` login tabs, loading at the same moment in a browser with no cookie yet."""
    pages = [context.new_page() for _ in range(count)]
    for page in pages:
        page.goto(service.url + "/", wait_until="commit")
    for page in pages:
        expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_WAIT")
    return pages


def qr_ids(pages: list[Page]) -> list[str]:
    return [str(page.locator("#qrlogin").get_attribute("data-qr-id")) for page in pages]


def confirm(service: Service, qr_id: str) -> None:
    token = user_token(*DEMO_ALICE)
    assert phone_step(service.url, token, qr_id, "SCAN").status_code == 200
    assert phone_step(service.url, token, qr_id, "VERIFY").status_code == 200


def test_eight_tabs_hold_one_stream_and_each_logs_in(chromium: Browser, service: Service) -> None:
    context = chromium.new_context()
    pages = open_tabs(context, service, TABS)
    ids = qr_ids(pages)
    assert len(set(ids)) == TABS  # no tab lost its code to another's binding cookie
    for page in pages:
        expect(page.locator("#qrlogin")).to_have_attribute("data-transport", "shared")
    wait_until(lambda: held(service) == 1, 10, "the eight tabs hold one stream")
    assert qr_ids(pages) == ids  # each code stayed its tab's: none had to be made again
    assert sum(1 for page in pages if page.evaluate("QRLogin.sharing()") == ["qr"]) == 1

    # The page can still reach the service (six connections per host, one taken).
    for page in pages:
        status = page.evaluate(
            "Promise.race([fetch('/healthz').then(r => r.status),"
            f" new Promise(r => setTimeout(() => r('stalled'), {margin(5) * 1000:.0f}))])"
        )
        assert status == 200

    # Each is confirmed in turn and each logs in, the tab holding the stream first (its
    # leaving hands the stream over).
    order = sorted(pages, key=lambda page: page.evaluate("QRLogin.sharing()") != ["qr"])
    for page in order:
        confirm(service, str(page.locator("#qrlogin").get_attribute("data-qr-id")))
        page.wait_for_url("**/app")
        expect(page.locator("#user-name")).to_have_text("Alice Example")

    # Eight tabs logged in: one session stream between them.
    wait_until(lambda: held(service) == 1, 10, "the eight logged-in tabs hold one stream")
    assert sum(1 for page in pages if page.evaluate("QRLogin.sharing()") == ["session"]) == 1
    context.close()


def test_closing_the_tab_that_holds_the_stream_loses_no_event(
    chromium: Browser,
    service: Service,
) -> None:
    context = chromium.new_context()
    pages = open_tabs(context, service, 3)
    holder = next(page for page in pages if page.evaluate("QRLogin.sharing()") == ["qr"])
    others = [page for page in pages if page is not holder]
    token = user_token(*DEMO_ALICE)
    first, second = (str(p.locator("#qrlogin").get_attribute("data-qr-id")) for p in others)
    # A scan lands while the stream changes hands: the new holder's stream starts with it.
    holder.close()
    assert phone_step(service.url, token, first, "SCAN").status_code == 200
    expect(others[0].locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_SCANNED")
    assert any(page.evaluate("QRLogin.sharing()") == ["qr"] for page in others)
    assert phone_step(service.url, token, first, "VERIFY").status_code == 200
    others[0].wait_for_url("**/app")
    confirm(service, second)
    others[1].wait_for_url("**/app")
    context.close()


def test_the_same_device_logs_in_through_open_in_the_app(
    chromium: Browser,
    service: Service,
) -> None:
    context = chromium.new_context(**PHONE)  # type: ignore[arg-type]
    page = context.new_page()
    page.goto(service.url + "/")
    expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_WAIT")
    link = page.locator(".qrlogin-open-app")
    expect(link).to_be_visible()
    expect(link).to_have_text("Open in the app")
    # The demo's link opens the phone stand-in with the app link in its address.
    assert "rk%3A%2F%2Fscanforpclogin%2F%3Fqr%3D" in str(link.get_attribute("href"))
    with context.expect_page() as opened:
        link.click()
    app = opened.value
    # The page comes before its scripts have run; a click on a sign-in button then has no
    # handler to reach (it failed so once in a full run of the suite).
    app.wait_for_load_state()
    app.locator("button.user").first.click()  # sign in on the stand-in
    # It asks first: nothing reaches the page that showed the code until the user taps.
    expect(app.locator("#linked")).to_be_visible()
    app.wait_for_timeout(500)
    expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_WAIT")
    app.locator("#linked-go").click()
    expect(app.locator("#confirm")).to_be_visible()
    expect(app.locator("#requester")).to_contain_text("Android")
    app.locator("#approve").click()
    expect(app.locator("#announce")).to_contain_text("Confirmed")
    page.wait_for_url("**/app")
    context.close()


def test_without_locks_or_broadcast_each_tab_streams_its_own_code(
    chromium: Browser,
    service: Service,
) -> None:
    """Where the browser lacks the APIs to share, each tab has its own stream (and the
    long poll stays the fallback where EventSource is missing: test_browser.py)."""
    context = chromium.new_context()
    context.add_init_script("delete window.BroadcastChannel;")
    pages = open_tabs(context, service, 2)
    for page in pages:
        expect(page.locator("#qrlogin")).to_have_attribute("data-transport", "sse")
    wait_until(lambda: held(service) == 2, 10, "two tabs, two streams")
    ids = qr_ids(pages)
    assert len(set(ids)) == 2
    for page, qr_id in zip(pages, ids, strict=True):
        confirm(service, qr_id)
        page.wait_for_url("**/app")
    context.close()


def test_a_tab_whose_code_is_no_longer_its_browsers_gets_a_new_one(
    chromium: Browser,
    service: Service,
) -> None:
    """The browser's binding cookie changes under a waiting tab (cleared, or set by
    another page): the shared stream says its code is gone, and the tab makes a new one."""
    context = chromium.new_context()
    (first,) = open_tabs(context, service, 1)
    old_id = qr_ids([first])[0]
    stranger = requests.post(
        service.url + "/v1/accounts/qrcode/", json={"platform": "web"}, timeout=margin(30)
    )
    cookie = stranger.cookies["qrlogin_bind"]
    context.add_cookies([{"name": "qrlogin_bind", "value": cookie, "url": service.url}])
    second = context.new_page()  # its code makes the shared stream open again
    second.goto(service.url + "/")
    expect(first.locator("#qrlogin")).not_to_have_attribute("data-qr-id", old_id)
    expect(first.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_WAIT")
    confirm(service, qr_ids([first])[0])
    first.wait_for_url("**/app")
    context.close()
