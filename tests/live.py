"""Real HTTP and SSE clients of a running service, for the streaming tests."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.timing import margin


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
