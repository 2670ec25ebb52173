"""Parked QR streams: under the Procfile's worker, a waiting browser's stream is served by
the process's lot, not by a greenlet of its own. The contract's stream tests
(test_stream.py, test_expiry.py, test_proxy.py) run against it unchanged; these check
what is particular to parking."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from qrlogin.sse import reconnect_hint
from servers.service import Service
from tests.conftest import StartService
from tests.live import (
    NO_LIMITS,
    PROMPT_S,
    Browser,
    margin,
    metric,
    open_streams,
    phone_step,
    user_token,
    wait_until,
)

pytestmark = pytest.mark.slow

PARKED = "qrlogin_parked_streams"


def raw_get(service: Service, path: str, cookie: str, protocol: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", service.port), timeout=margin(10))
    sock.sendall(
        f"GET {path} {protocol}\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n"
        f"Cookie: qrlogin_bind={cookie}\r\n\r\n".encode()
    )
    return sock


def read_until(sock: socket.socket, marker: bytes) -> bytes:
    seen = b""
    while marker not in seen:
        more = sock.recv(65536)
        if not more:
            break
        seen += more
    return seen


def dechunk(raw: bytes) -> bytes:
    """The body of a chunked transfer, checking its framing and its last chunk."""
    body = b""
    while True:
        size_line, _, raw = raw.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert raw == b"\r\n", raw
            return body
        body += raw[:size]
        assert raw[size : size + 2] == b"\r\n"
        raw = raw[size + 2 :]


def test_waiting_streams_are_parked_and_leave_when_browsers_go(start_service: StartService) -> None:
    service = start_service(**NO_LIMITS)
    browser = Browser(service.url)
    ids = [browser.create()["id"] for _ in range(30)]

    async def hold_then_leave() -> None:
        streams = await open_streams("127.0.0.1", service.port, browser.bind_cookie, ids)
        wait_until(lambda: metric(service.url, PARKED) == 30, PROMPT_S, "30 streams parked")
        assert metric(service.url, "qrlogin_waiting_browsers") == 30
        for _, writer in streams:
            writer.close()
        await asyncio.sleep(0)

    asyncio.run(hold_then_leave())
    # The lot notices each browser that went away, with nothing written to it.
    wait_until(lambda: metric(service.url, PARKED) == 0, PROMPT_S, "every stream released")
    assert metric(service.url, "qrlogin_waiting_browsers") == 0
    assert metric(service.url, "qrlogin_held_connections") == 0


def test_parked_stream_chunked_for_http11_and_to_the_close_for_http10(
    start_service: StartService,
) -> None:
    service = start_service(QRLOGIN_SSE_HEARTBEAT="1", **NO_LIMITS)
    browser = Browser(service.url)
    token = user_token()
    for protocol in ("HTTP/1.1", "HTTP/1.0"):
        qr = browser.create()
        sock = raw_get(
            service, f"/v1/accounts/qrcode/{qr['id']}/events", browser.bind_cookie, protocol
        )
        with sock:
            opened = read_until(sock, b"QRCODE_WAIT")
            head, _, body = opened.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK")
            assert b"Connection: close" in head
            assert b"text/event-stream" in head and b"Cache-Control: no-store" in head
            chunked = b"Transfer-Encoding: chunked" in head
            assert chunked is (protocol == "HTTP/1.1")
            rest = read_until(sock, b": ping")  # a heartbeat from the lot
            phone_step(service.url, token, qr["id"], "SCAN")
            phone_step(service.url, token, qr["id"], "VERIFY")
            everything = body + rest
            while more := sock.recv(65536):  # the lot ends the stream after SUCCESS
                everything += more
        text = dechunk(everything) if chunked else everything  # HTTP/1.0: as is, to the close
        assert b"\r" not in text
        blocks = text.split(b"\n\n")
        assert blocks[-1] == b""  # every block complete
        assert [b for b in blocks if b.startswith(b": ping")], "a heartbeat"
        statuses = [b.split(b'"status": "')[1].split(b'"')[0] for b in blocks if b"status" in b]
        assert statuses == [b"QRCODE_WAIT", b"QRCODE_SCANNED", b"QRCODE_SUCCESS"]


def test_the_stock_gevent_worker_still_serves_streams(start_service: StartService) -> None:
    """``--worker-class gevent`` (a greenlet per stream): the same events, nothing parked."""
    service = start_service(GUNICORN_CMD_ARGS="--worker-class gevent", **NO_LIMITS)
    browser = Browser(service.url)
    qr = browser.create()
    stream = browser.stream(qr["id"])
    events = stream.events()
    assert next(events).json["status"] == "QRCODE_WAIT"
    assert metric(service.url, PARKED) == 0
    assert metric(service.url, "qrlogin_waiting_browsers") == 1
    phone_step(service.url, user_token(), qr["id"], "SCAN")
    assert next(events).json["status"] == "QRCODE_SCANNED"
    stream.close()


def test_the_worker_patches_before_qrlogin_is_imported(start_service: StartService) -> None:
    """gevent must patch the standard library before Flask, redis and qrlogin load: the
    worker class lives in a module that imports none of them."""
    service = start_service()
    time.sleep(0.5)
    log = service.log()
    assert "MonkeyPatchWarning" not in log, log


def test_reconnect_hints_spread_with_the_streams_a_worker_ends() -> None:
    """A worker that ends many streams spreads their return: about 1,000 a second, from
    when it has ended them all."""

    def delays(ending: int) -> list[int]:
        return [int(reconnect_hint(ending).split("\n")[0].split(": ")[1]) for _ in range(2000)]

    few, many, huge = delays(10), delays(12_000), delays(1_000_000)
    assert min(few) >= 250 and max(few) <= 2000 and min(few) < 400
    # None before the worker has told them all (about 10,000 a second), then ~1,000 a second.
    assert 1200 <= min(many) < 1400 and 12_000 < max(many) <= 13_200
    assert min(huge) >= 5000 and 15_000 < max(huge) <= 20_000
