"""A minimal HTTP/1.1 client on raw asyncio streams: keep-alive requests and SSE streams.

Load clients need thousands of connections from one process; generic client libraries
pool and limit connections by default, so the benchmark speaks HTTP itself.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, cast


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return status, headers


@dataclass
class Connection:
    """One keep-alive connection for plain requests."""

    host: str
    port: int
    cookie: str = ""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    requests: int = 0

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        if self.writer is None or self.writer.is_closing():
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        if payload:
            lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        if self.cookie:
            lines.append(f"Cookie: qrlogin_bind={self.cookie}")
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        await self.writer.drain()
        assert self.reader is not None
        status, head = await read_head(self.reader)
        data = await self.reader.readexactly(int(head.get("content-length", "0")))
        self.requests += 1
        cookie = head.get("set-cookie", "")
        if cookie.startswith("qrlogin_bind="):
            self.cookie = cookie.split(";", 1)[0].split("=", 1)[1]
        if head.get("connection", "").lower() == "close":
            self.writer.close()
        return Answer(status, head, data)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


@dataclass
class Stream:
    """One SSE stream: when it opened, which statuses arrived when."""

    qr_id: str
    opened_at: float = 0.0
    events: list[tuple[float, str]] = field(default_factory=list)
    ended: bool = False
    error: str = ""
    retry_ms: int = 0
    last_seen: float = 0.0  # when the server last sent anything (a heartbeat counts)
    transport: asyncio.BaseTransport | None = None


async def open_stream(
    host: str,
    port: int,
    path: str,
    cookie: str,
    stream: Stream,
    last_event_id: str = "",
    source: str | None = None,
) -> asyncio.Future[None]:
    """Connect (from the ``source`` address, if given) and read the response head (raises
    on anything but 200); from then on every event is recorded as it arrives. Returns
    what is done when the server ends the stream. ``cookie`` is a binding cookie's
    value, or a whole ``name=value`` pair."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[None] = loop.create_future()
    ended: asyncio.Future[None] = loop.create_future()
    extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    pair = cookie if "=" in cookie else f"qrlogin_bind={cookie}"
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n"
        f"Cookie: {pair}\r\n{extra}\r\n"
    ).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if source is not None:
            # The port is picked at connect, where the kernel checks the whole address
            # pair: a port picked at bind() (and libuv binds with SO_REUSEADDR) may be
            # one another stream to the same server already has (EADDRNOTAVAIL).
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        await _connect(loop, sock, host, port)
    except BaseException:
        sock.close()
        raise
    await loop.create_connection(lambda: _Follower(stream, request, opened, ended), sock=sock)
    await opened
    return ended


async def _connect(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, host: str, port: int
) -> None:
    """Connect the non-blocking ``sock`` to the numeric ``host``. uvloop's
    ``sock_connect`` first looks the address up with getaddrinfo on its thread pool,
    even a numeric one: with 12,000 browsers coming back after a restart, that was a
    quarter of a load process's CPU."""
    code = sock.connect_ex((host, port))
    if code == errno.EINPROGRESS:
        done: asyncio.Future[None] = loop.create_future()

        def writable() -> None:
            if not done.done():
                done.set_result(None)

        loop.add_writer(sock.fileno(), writable)
        try:
            await done
        finally:
            loop.remove_writer(sock.fileno())
        code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if code:
        raise OSError(code, os.strerror(code))


#: Linux's socket option (24), which Python's socket module does not name.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


class _Follower(asyncio.Protocol):
    """Reads one stream as it arrives: the head, then each event, (time, status).

    A heartbeat costs one call here. With a stream reader and a task per stream it took
    several turns of the event loop, and at 100,000 streams about 6,700 heartbeats a
    second reach load processes that share the two cores with the service."""

    def __init__(
        self, stream: Stream, request: bytes, opened: asyncio.Future[None],
        ended: asyncio.Future[None],
    ) -> None:  # fmt: skip
        self.stream, self.request, self.opened, self.ended = stream, request, opened, ended
        self.transport: asyncio.Transport | None = None
        self.rest = b""  # an unfinished line (or, before the body, the head so far)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        stream, transport = self.stream, self.transport
        assert transport is not None
        if not self.opened.done():
            head, found, data = (self.rest + data).partition(b"\r\n\r\n")
            if not found:
                self.rest = head
                return
            self.rest = b""
            status = int(head.split(b" ", 2)[1])
            if status != 200:
                self.opened.set_exception(ConnectionError(f"HTTP {status}"))
                transport.close()
                return
            stream.transport, stream.opened_at = transport, time.time()
            stream.ended, stream.last_seen = False, stream.opened_at
            self.opened.set_result(None)
        now = stream.last_seen = time.time()
        *lines, self.rest = (self.rest + data).split(b"\n")
        for line in lines:
            if line.startswith(b"retry:"):
                stream.retry_ms = int(line[6:].strip())
            elif line.startswith(b"data:") and b'"status"' in line:
                stream.events.append((now, json.loads(line[5:])["status"]))
            elif line == b"0\r":  # the chunked body's end
                transport.close()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("closed before the head"))
        elif exc is not None:
            self.stream.error = type(exc).__name__
        self.stream.ended = True
        if not self.ended.done():
            self.ended.set_result(None)
