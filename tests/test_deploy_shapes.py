"""Shapes of deployment on one host: gunicorn serving TLS itself, the client generated from
the spec over HTTP and HTTPS, request ids and JSON logs for a platform's
log drain."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import expect

from servers.redis_server import TLSFiles
from servers.service import Service
from tests.conftest import StartService
from tests.live import Browser, margin, phone_step, user_token, wait_until

pytestmark = pytest.mark.slow

NO_LIMITS = {"QRLOGIN_RATE_LIMITS": "off"}


@pytest.fixture(params=["http", "https"])
def any_scheme(request: pytest.FixtureRequest, start_service: StartService) -> Service:
    if request.param == "http":
        return start_service(**NO_LIMITS)
    trusted: TLSFiles = request.getfixturevalue("trust")
    return start_service(tls=trusted, **NO_LIMITS)


def test_streams_over_gunicorn_tls(start_service: StartService, trust: TLSFiles) -> None:
    """A QR stream on a TLS connection keeps its greenlet (it cannot be parked): its
    events arrive on the same connection, and a client leaving logs nothing."""
    service = start_service(tls=trust, **NO_LIMITS)
    browser = Browser(service.url)
    qr = browser.create()
    assert "__Host-qrlogin_bind" in browser.session.cookies
    stream = browser.stream(qr["id"])
    events = stream.events()
    assert next(events).json["status"] == "QRCODE_WAIT"
    token = user_token()
    assert phone_step(service.url, token, qr["id"], "SCAN").status_code == 200
    assert next(events).json["status"] == "QRCODE_SCANNED"
    assert phone_step(service.url, token, qr["id"], "VERIFY").status_code == 200
    assert next(events).json["status"] == "QRCODE_SUCCESS"
    assert list(events) == []  # the server ended the stream
    assert browser.guest(qr["id"]).json()["data"]["token"]

    # Clients that leave while waiting: dropped, and closed with close_notify.
    for _ in range(3):
        leaving = browser.stream(browser.create()["id"])
        assert next(leaving.events()).json["status"] == "QRCODE_WAIT"
        leaving.close()
    wait_until(lambda: "qrlogin_waiting_browsers 0.0" in metrics(service), 10, "streams left")
    log = service.log()
    assert "Traceback" not in log and "ValueError" not in log, log


def metrics(service: Service) -> str:
    return requests.get(service.url + "/metrics", timeout=margin(30)).text


def test_chromium_sees_each_status_over_gunicorn_tls(
    start_service: StartService, trust: TLSFiles, chromium: Chromium
) -> None:
    service = start_service(tls=trust, QRLOGIN_DEMO="1")
    context = chromium.new_context(ignore_https_errors=True)
    page = context.new_page()
    reconnects: list[str] = []
    page.on(
        "request",
        lambda r: reconnects.append(r.url) if "/qrcode/" in r.url and "/events" in r.url else None,
    )
    page.goto(service.url + "/?transport=sse&share=off")  # the QR's own stream, parkable
    widget = page.locator("#qrlogin")
    expect(widget).to_have_attribute("data-status", "QRCODE_WAIT")
    expect(widget).to_have_attribute("data-transport", "sse")
    qr_id = widget.get_attribute("data-qr-id")
    assert qr_id
    token = user_token()
    assert phone_step(service.url, token, qr_id, "SCAN").status_code == 200
    expect(widget).to_have_attribute("data-status", "QRCODE_SCANNED")
    assert phone_step(service.url, token, qr_id, "VERIFY").status_code == 200
    page.wait_for_url("**/app")
    assert len(reconnects) == 1, reconnects  # one stream, no reconnect
    context.close()


def generate_client(service: Service, folder: Path) -> Path:
    """The Python client openapi-python-client writes from the service's /openapi.json."""
    spec = folder / "openapi.json"
    spec.write_text(requests.get(service.url + "/openapi.json", timeout=margin(30)).text)
    subprocess.run(
        [sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec),
         "--meta", "none", "--output-path", str(folder / "qrlogin_client")],
        check=True, capture_output=True, cwd=folder, timeout=margin(120),
    )  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Path]:
    from tests.live import SECRET

    logs = tmp_path_factory.mktemp("generator")
    env = {"SECRET_KEY": SECRET, "REDIS_URL": redis_url}
    with Service(env, logs).start() as service:
        folder = generate_client(service, tmp_path_factory.mktemp("generated"))
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


def test_generated_client_logs_in(generated: Path, any_scheme: Service) -> None:
    """A whole login with the generated client: its cookie jar keeps the binding cookie
    (qrlogin_bind over HTTP, __Host-qrlogin_bind over HTTPS) and sends it once."""
    from qrlogin_client import Client  # type: ignore[import-not-found]
    from qrlogin_client.api.default import (  # type: ignore[import-not-found]
        create_qr_code,
        events,
        guest,
    )
    from qrlogin_client.models import (  # type: ignore[import-not-found]
        CreateRequest,
        GuestRequest,
    )

    service = any_scheme
    ca = os.environ.get("SSL_CERT_FILE")
    client = Client(
        base_url=service.url, verify_ssl=ssl.create_default_context(cafile=ca) if ca else True
    )
    created = create_qr_code.sync(client=client, body=CreateRequest(platform="generated"))
    qr_id = created.data.id
    token = user_token()
    assert phone_step(service.url, token, qr_id, "SCAN").status_code == 200
    assert phone_step(service.url, token, qr_id, "VERIFY").status_code == 200
    stream = events.sync_detailed(qr_id, client=client)
    assert stream.status_code == 200, stream.content
    assert b"QRCODE_SUCCESS" in stream.content
    redeemed = guest.sync_detailed(client=client, body=GuestRequest(code=qr_id))
    assert redeemed.status_code == 200, redeemed.content
    assert json.loads(redeemed.content)["data"]["token"]


def test_request_ids_and_json_logs(start_service: StartService) -> None:
    """The router's X-Request-Id is echoed and on the request's log lines, the access line
    included; without one, one is made up; a forged one (spaces, quotes) is replaced."""
    service = start_service(QRLOGIN_LOG_FORMAT="json", QRLOGIN_ACCESS_LOG="-", **NO_LIMITS)
    sent = "4f2a7a4e-2f0c-4c1e-9d3e-0a1b2c3d4e5f"
    answer = requests.get(service.url + "/v1/passport/me", headers={"X-Request-Id": sent},
                          timeout=margin(30))  # fmt: skip
    assert answer.headers["X-Request-Id"] == sent
    made_up = requests.get(service.url + "/healthz", timeout=margin(30)).headers["X-Request-Id"]
    assert len(made_up) == 32 and made_up != sent
    forged = 'x" "level": "CRITICAL'
    replaced = requests.get(service.url + "/healthz", headers={"X-Request-Id": forged},
                            timeout=margin(30)).headers["X-Request-Id"]  # fmt: skip
    assert replaced != forged and len(replaced) == 32

    def access_lines() -> list[dict[str, Any]]:
        found = []
        for line in service.log().splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))  # every line of the log is JSON
        return [f for f in found if f.get("logger") == "gunicorn.access"]

    wait_until(lambda: len(access_lines()) >= 3, 10, "access lines")
    mine = [f for f in access_lines() if f["request_id"] == sent]
    assert mine and mine[0]["path"] == "/v1/passport/me" and mine[0]["status"] == 401
    assert all(f["request_id"] != forged for f in access_lines())
    for line in service.log().splitlines():
        if line.strip() and not line.startswith("{"):
            pytest.fail(f"a log line that is not JSON: {line!r}")


def test_text_logs_carry_the_request_id(start_service: StartService) -> None:
    service = start_service(QRLOGIN_ACCESS_LOG="-", **NO_LIMITS)
    sent = "req-1234567890"
    requests.get(service.url + "/healthz", headers={"X-Request-Id": sent}, timeout=margin(30))
    wait_until(lambda: sent in service.log(), 10, "the access line")
    line = next(x for x in service.log().splitlines() if sent in x)
    assert '"GET /healthz HTTP/1.1" 200' in line and line.endswith(sent)


def test_forwarded_headers_unread_are_reported(start_service: StartService) -> None:
    service = start_service(**NO_LIMITS)
    quiet = requests.get(service.url + "/readyz", timeout=margin(30)).json()["data"]
    assert quiet["warnings"] == []
    requests.get(service.url + "/healthz", headers={"X-Forwarded-For": "198.51.100.7"},
                 timeout=margin(30))  # fmt: skip
    ready = requests.get(service.url + "/readyz", timeout=margin(30)).json()["data"]
    assert "QRLOGIN_TRUSTED_PROXIES" in ready["warnings"][0]
    time.sleep(0.2)
    for _ in range(3):
        requests.get(service.url + "/healthz", headers={"X-Forwarded-For": "198.51.100.7"},
                     timeout=margin(30))  # fmt: skip
    assert service.log().count("QRLOGIN_TRUSTED_PROXIES=0 ignores them") == 1  # once


@pytest.mark.parametrize("matching", [False, True], ids=["plain", "number matching"])
def test_generated_client_does_the_phones_side(
    generated: Path, start_service: StartService, matching: bool
) -> None:
    """The phone's side as docs/API.md ("Building the mobile app") tells it, with the
    client generated from the spec: check the QR text, SCAN, read `matching`, VERIFY
    (with the code the person types, spaces and all, when it is required)."""
    from qrlogin_client import AuthenticatedClient
    from qrlogin_client.api.default import fill_qr_code
    from qrlogin_client.models import FillRequest, FillRequestStep

    service = start_service(QRLOGIN_NUMBER_MATCHING="1" if matching else "0", **NO_LIMITS)
    browser = Browser(service.url)
    created = browser.create()
    text = created["content"]  # what the camera reads from the QR
    qr = json.loads(text)
    assert qr["prefix"] == "rk://scanforpclogin/" and qr["expire"] > time.time()
    phone = AuthenticatedClient(base_url=service.url, token=user_token())

    scan = fill_qr_code.sync(client=phone, body=FillRequest(id=qr["id"], step=FillRequestStep.SCAN))
    assert scan.data.status == "QRCODE_SCANNED"
    assert scan.data.matching.required is matching and scan.data.matching.length == 2
    verify = FillRequest(id=qr["id"], step=FillRequestStep.VERIFY)
    if scan.data.matching.required:
        shown = browser.guest(qr["id"]).json()["data"]["verify_code"]  # on the computer
        verify = FillRequest(id=qr["id"], step=FillRequestStep.VERIFY, verify_code=f" {shown} ")
    confirmed = fill_qr_code.sync(client=phone, body=verify)
    assert confirmed.data.status == "QRCODE_SUCCESS", confirmed
    assert browser.guest(qr["id"]).json()["data"]["token"]
