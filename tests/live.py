"""The tests' helpers: their timing margins, and real HTTP and SSE clients of a running
service.

Every timing margin of the suite comes from here, so one setting widens them all. The
suite checks behaviour, not speed (the benchmark measures speed). Where a test must
bound a time (an event arrives "promptly", a stopping worker exits "quickly"), it asks
``margin()`` for the bound. ``QRLOGIN_TEST_PATIENCE`` (default 1) multiplies every
margin, and the waits for servers to start (``servers``), on a slow machine.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import requests
import zxingcpp
from itsdangerous import URLSafeTimedSerializer
from PIL import Image
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import BrowserContext, Page, expect

from servers.process import PATIENCE, ROOT
from servers.service import Service

#: Something the service pushes "at once" arrives within this, on a busy 2-core box (s).
PROMPT_S = 2.0


def margin(seconds: float) -> float:
    """A time bound of ``seconds`` on an idle machine, widened by the patience setting."""
    return seconds * PATIENCE


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``check`` until it holds; fail after ``margin(seconds)``."""
    deadline = time.monotonic() + margin(seconds)
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {margin(seconds):.0f} s")
        time.sleep(0.1)


class Browser:
    """A browser: a cookie jar (with the binding cookie) talking to a service."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def create(self, **body: Any) -> dict[str, Any]:
        response = self.session.post(
            self.base_url + "/v1/accounts/qrcode/",
            json={"platform": "Rxx_PC", **body},
            timeout=margin(30),
        )
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def guest(self, qr_id: str, **extra: Any) -> requests.Response:
        return self.session.post(
            self.base_url + "/v1/passport/guest", json={"code": qr_id, **extra}, timeout=margin(60)
        )

    @property
    def bind_cookie(self) -> str:
        return str(self.session.cookies["qrlogin_bind"])

    def stream(self, qr_id: str, last_event_id: str | None = None) -> SSEStream:
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        response = self.session.get(
            f"{self.base_url}/v1/accounts/qrcode/{qr_id}/events",
            headers=headers,
            stream=True,
            timeout=(margin(30), margin(30)),
        )
        return SSEStream(response)


def sample(text: str, name: str, labels: str = "") -> float:
    """One sample of a /metrics text (0 when absent)."""
    match = re.search(rf"^{re.escape(name)}{re.escape(labels)} ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def metric(base_url: str, name: str) -> float:
    """One metric of a running service, all its workers together."""
    return sample(requests.get(base_url + "/metrics", timeout=margin(30)).text, name)


def end_session_on_phone(base_url: str, token: str, sid: str) -> requests.Response:
    """The phone ends one of its user's sessions."""
    return requests.delete(
        f"{base_url}/v1/accounts/sessions/{sid}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=margin(30),
    )


def phone_step(base_url: str, token: str, qr_id: str, step: str, **extra: Any) -> requests.Response:
    return requests.post(
        base_url + "/v1/accounts/qrcode_fill",
        json={"id": qr_id, "step": step, **extra},
        headers={"Authorization": f"Bearer {token}"},
        timeout=margin(30),
    )


@dataclass
class Event:
    """One SSE block: its fields, or a comment."""

    event: str | None = None
    id: str | None = None
    data: str = ""
    retry: int | None = None
    comments: list[str] = field(default_factory=list)
    at: float = 0.0

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class SSEStream:
    """Parses a text/event-stream response as the EventSource spec says."""

    def __init__(self, response: requests.Response) -> None:
        self.response = response
        self._lines = response.iter_lines(decode_unicode=True)

    def __iter__(self) -> Iterator[Event]:
        """The blocks until the server ends the stream or the connection breaks."""
        try:
            yield from self._blocks()
        except (requests.exceptions.ChunkedEncodingError, requests.ConnectionError):
            return  # a dropped connection, as EventSource sees it

    def _blocks(self) -> Iterator[Event]:
        block = Event()
        data: list[str] = []
        for line in self._lines:
            if line == "":
                if data or block.event or block.id or block.retry or block.comments:
                    block.data = "\n".join(data)
                    block.at = time.monotonic()
                    yield block
                block, data = Event(), []
                continue
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "":
                block.comments.append(value)
            elif name == "data":
                data.append(value)
            elif name == "event":
                block.event = value
            elif name == "id":
                block.id = value
            elif name == "retry":
                block.retry = int(value)

    def events(self) -> Iterator[Event]:
        """Only the ``status`` events."""
        return (e for e in self if e.event == "status")

    def close(self) -> None:
        self.response.close()


async def open_streams(
    host: str, port: int, cookie: str, qr_ids: list[str], concurrency: int = 50
) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Open one raw SSE connection per QR and read up to its first event."""
    gate = asyncio.Semaphore(concurrency)

    async def one(qr_id: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with gate:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(
                f"GET /v1/accounts/qrcode/{qr_id}/events HTTP/1.1\r\nHost: {host}\r\n"
                f"Accept: text/event-stream\r\nCookie: qrlogin_bind={cookie}\r\n\r\n".encode()
            )
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), margin(30))
            assert head.startswith(b"HTTP/1.1 200"), head
            await asyncio.wait_for(reader.readuntil(b"QRCODE_WAIT"), margin(30))
            return reader, writer

    return list(await asyncio.gather(*(one(q) for q in qr_ids)))


def login_with_a_stream(base_url: str, token: str) -> None:
    """A whole login as the service's page does it: create, the QR's stream open, the
    phone's SCAN and VERIFY (with ``token``) each seen on the stream, and the redemption."""
    browser = Browser(base_url)
    qr = browser.create()
    stream = browser.stream(qr["id"])
    events = stream.events()
    assert next(events).json["status"] == "QRCODE_WAIT"
    for step, status in (("SCAN", "QRCODE_SCANNED"), ("VERIFY", "QRCODE_SUCCESS")):
        assert phone_step(base_url, token, qr["id"], step).status_code == 200
        assert next(events).json["status"] == status
    assert browser.guest(qr["id"]).json()["data"]["token"]
    stream.close()


#: The key every service and app of the tests signs with.
SECRET = "tests-only-Zq8Vn3Kp7Wd2Rx6Hb4Tf9Lm5"
#: Settings of a service whose limits would get in a test's way.
NO_LIMITS = {"QRLOGIN_RATE_LIMITS": "off"}
#: The demo's Alice, as the stand-in signs her in: user id, name, avatar.
DEMO_ALICE = ("u-alice", "Alice Example", "/static/avatars/alice.svg")


def user_token(user_id: str = "u-alice", name: str = "Alice", avatar: str | None = None) -> str:
    """A user token for the phone, signed as the main application signs it."""
    payload = {"sub": user_id, "name": name, **({"avatar": avatar} if avatar else {})}
    return str(URLSafeTimedSerializer(SECRET, salt="qrlogin.user").dumps(payload))


def log_in(service: Service, user: str = "u-alice") -> Browser:
    """A browser that logged in (it holds the session cookie)."""
    browser = Browser(service.url)
    qr_id = browser.create()["id"]
    token = user_token(user)
    phone_step(service.url, token, qr_id, "SCAN")
    phone_step(service.url, token, qr_id, "VERIFY")
    assert "token" in browser.guest(qr_id).json()["data"]
    return browser


def session_events(browser: Browser) -> requests.Response:
    return browser.session.get(
        browser.base_url + "/v1/passport/session/events",
        headers={"Accept": "text/event-stream"},
        stream=True,
        timeout=(margin(30), margin(30)),
    )


# Pages in Chromium.

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "tests" / "artifacts"
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


#: What the services of the functional tests run with: no refusals for a late event loop
#: or for answers slower than the worker's fastest, which a machine busy with other tests
#: would cause (``test_admission_lag.py``, ``test_pace.py`` and ``test_admission.py``
#: check those mechanisms, and the overload benchmark shows them at work).
FUNCTIONAL = {"QRLOGIN_MAX_LAG": "0", "QRLOGIN_MAX_SLOWDOWN": "0"}


def demo_service(redis_url: str, logs: Path, **settings: str) -> Service:
    redis.Redis.from_url(redis_url).flushdb()
    env = {"SECRET_KEY": SECRET, "REDIS_URL": redis_url, "QRLOGIN_DEMO": "1", **FUNCTIONAL}
    return Service({**env, **settings}, logs).start()


def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    assert (ARTIFACTS / f"{name}.png").stat().st_size > 1000
    if os.environ.get("QRLOGIN_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def read_qr(page: Page) -> dict[str, Any]:
    """Decode the QR from pixels on the screen, as a phone camera would."""
    path = ARTIFACTS / "qr-element.png"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.locator(".qrlogin-qr").screenshot(path=str(path))
    found = zxingcpp.read_barcodes(
        Image.open(path), formats=zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    )
    assert len(found) == 1
    decoded: dict[str, Any] = json.loads(found[0].text)
    return decoded


def open_login(page: Page, service: Service, query: str = "") -> dict[str, Any]:
    page.goto(service.url + "/" + query)
    expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_WAIT")
    qr = read_qr(page)
    assert qr["id"] == page.locator("#qrlogin").get_attribute("data-qr-id")
    return qr


def confirm_and_land(page: Page, service: Service, qr_id: str, screenshots: bool = False) -> None:
    token = user_token(*DEMO_ALICE)
    assert phone_step(service.url, token, qr_id, "SCAN").status_code == 200
    expect(page.locator("#qrlogin")).to_have_attribute("data-status", "QRCODE_SCANNED")
    expect(page.locator(".qrlogin-name")).to_have_text("Alice Example")
    expect(page.locator(".qrlogin-status")).to_contain_text("Confirm the login on your phone")
    if screenshots:
        shot(page, "login-scanned")
    assert phone_step(service.url, token, qr_id, "VERIFY").status_code == 200
    page.wait_for_url("**/app")
    expect(page.locator("#user-name")).to_have_text("Alice Example")
    expect(page.locator("#platform")).to_have_text("Rxx_PC")


def phone_signed_in(chromium: Chromium, service: Service) -> tuple[BrowserContext, Page]:
    """The stand-in on a phone-sized screen, signed in as the demo user Alice."""
    phone = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    mobile = phone.new_page()
    mobile.goto(service.url + "/m")
    mobile.get_by_role("button", name="Alice Example").click()
    expect(mobile.locator("#announce")).to_contain_text("Signed in as Alice Example")
    return phone, mobile


def paste_qr(mobile: Page, qr: dict[str, Any]) -> None:
    mobile.locator("#qr-text").fill(json.dumps(qr, separators=(",", ":")))
    mobile.get_by_role("button", name="Use this QR").click()
