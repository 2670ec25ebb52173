"""A real gunicorn + gevent service process, and real SSE clients, for the streaming tests."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.redis_server import free_port

ROOT = Path(__file__).resolve().parent.parent


class Service:
    """``gunicorn -c gunicorn.conf.py wsgi:app`` on a free port, as the Procfile runs it."""

    def __init__(
        self, env: dict[str, str], workers: int = 1, config: str = "gunicorn.conf.py"
    ) -> None:
        self.port = free_port()
        self.config = config
        self.env = {
            **os.environ,
            "QRLOGIN_ACCESS_LOG": "",
            **env,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = Path(f"/tmp/qrlogin-test-gunicorn-{self.port}.log")  # noqa: S108

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Service:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", self.config, "wsgi:app"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> float:
        """SIGTERM the master; the seconds until it exited."""
        assert self.process is not None
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(60)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


class Browser:
    """A browser: a cookie jar (with the binding cookie) talking to a service."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()

    def create(self, **body: Any) -> dict[str, Any]:
        response = self.session.post(
            self.base_url + "/v1/accounts/qrcode/", json={"platform": "Rxx_PC", **body}, timeout=10
        )
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    def guest(self, qr_id: str, **extra: Any) -> requests.Response:
        return self.session.post(
            self.base_url + "/v1/passport/guest", json={"code": qr_id, **extra}, timeout=40
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
            timeout=(5, 30),
        )
        return SSEStream(response)


def phone_step(base_url: str, token: str, qr_id: str, step: str, **extra: Any) -> requests.Response:
    return requests.post(
        base_url + "/v1/accounts/qrcode_fill",
        json={"id": qr_id, "step": step, **extra},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
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
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            assert head.startswith(b"HTTP/1.1 200"), head
            await asyncio.wait_for(reader.readuntil(b"QRCODE_WAIT"), 30)
            return reader, writer

    return list(await asyncio.gather(*(one(q) for q in qr_ids)))
