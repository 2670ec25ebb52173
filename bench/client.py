"""The load client: a minimal HTTP/1.1 client on raw asyncio sockets (keep-alive requests
and SSE streams), and the load processes built on it, each with its own event loop,
talking to the benchmark by queue.

Load processes hold thousands of connections each; generic client libraries pool and
limit connections by default, so the benchmark speaks HTTP itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import gc
import json
import multiprocessing
import os
import random
import resource
import signal
import socket
import time
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any, TypeVar, cast

import uvloop
from qrlogin.models import SCANNED, WAIT

HOST = "127.0.0.1"
CTX = multiprocessing.get_context("spawn")
T = TypeVar("T")
#: A stream that heard nothing (not even a heartbeat) for this long counts as quiet (s).
QUIET_S = 40.0
#: The pause between a paced sender's opening its connections and its first call (s).
WARM_S = 0.5
#: Linux's socket option (24), which Python's socket module does not name.
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)
#: Linux's prctl() option (1): the signal a process gets when its parent ends.
PR_SET_PDEATHSIG = 1
#: The cpu controller's hierarchy (cgroup v1), and the least weight it gives a cgroup.
CPU_CGROUP = Path("/sys/fs/cgroup/cpu")
LEAST_SHARES = 2


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    lines = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, found, value = line.partition(":")
        if found:
            headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


@dataclass
class Connection:
    """One keep-alive connection for plain requests; it keeps the binding cookie it gets."""

    host: str
    port: int
    cookie: str = ""
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    requests: int = 0

    async def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Answer:
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

    path: str
    opened_at: float = 0.0
    events: list[tuple[float, str]] = field(default_factory=list)
    ended: bool = False
    error: str = ""
    retry_ms: int = 0
    last_seen: float = 0.0  # when the server last sent anything (a heartbeat counts)
    transport: asyncio.BaseTransport | None = None
    #: For servers that send nothing, not even the head, until a message comes (flask-sse,
    #: Nchan): open once the request is sent, and any message is an event.
    blind: bool = False


async def open_stream(
    port: int, stream: Stream, cookie: str, last_event_id: str = "", source: str | None = None
) -> asyncio.Future[None]:
    """Connect (from the ``source`` address, if given) and read the response head (raises
    on anything but 200); from then on every event is recorded as it arrives. Returns
    what is done when the server ends the stream. ``cookie``: a binding cookie's value,
    or a whole ``name=value`` pair."""
    loop = asyncio.get_running_loop()
    opened: asyncio.Future[None] = loop.create_future()
    ended: asyncio.Future[None] = loop.create_future()
    extra = f"Last-Event-ID: {last_event_id}\r\n" if last_event_id else ""
    pair = cookie if "=" in cookie else f"qrlogin_bind={cookie}"
    request = (
        f"GET {stream.path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n"
        f"Cookie: {pair}\r\n{extra}\r\n"
    ).encode()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if source is not None:
            # The port is picked at connect, where the kernel checks the whole address
            # pair: one picked at bind() may be taken towards the same server already.
            sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            sock.bind((source, 0))
        await _connect(loop, sock, port)
    except BaseException:
        sock.close()
        raise
    await loop.create_connection(lambda: _Follower(stream, request, opened, ended), sock=sock)
    await opened
    return ended


async def _connect(loop: asyncio.AbstractEventLoop, sock: socket.socket, port: int) -> None:
    """Connect the non-blocking ``sock``; uvloop's ``sock_connect`` would first look the
    numeric address up on its thread pool, a cost that adds up over thousands."""
    code = sock.connect_ex((HOST, port))
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


class _Follower(asyncio.Protocol):
    """Reads one stream as it arrives: the head, then each event as (time, status); a
    heartbeat costs one call, not turns of the event loop."""

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
        if self.stream.blind:
            self.stream.transport, self.stream.opened_at = transport, time.time()
            self.opened.set_result(None)

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
            elif line.startswith(b"data:") and stream.blind:
                stream.events.append((now, "message"))
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


# ---- the load processes ---------------------------------------------------------------


def _run(main: Coroutine[Any, Any, T], ready: Any = None, own_session: bool = False, collect: bool = True,
         seat: Backseat | None = None) -> T:  # fmt: skip
    """Run a load process's loop on uvloop, which leaves more of the shared cores to what
    is measured than asyncio's own; with ``ready`` (a barrier the processes of one load
    share), once every one of them has started: a process still starting (Python, its
    imports) takes the cores on which the others' first second is measured.
    ``own_session``: see ``own_group``. Without ``collect``, no garbage collection runs
    until the loop ends: a process that times logins while it keeps the record of every
    attempt would otherwise stop its loop for a full collection over that growing
    record, with logins in flight (docs/BENCHMARKS.md measures it). Its loop's objects
    are freed by their counts; the rest is collected after. With ``seat``, the process
    first moves into that cgroup (``Backseat``)."""
    own_group(own_session)
    if seat is not None:
        seat.take([os.getpid()])
    if ready is not None:
        ready.wait()
    if not collect:
        gc.disable()
    try:
        ran: T = uvloop.run(main)
    finally:
        if not collect:
            gc.enable()
            gc.collect()
    return ran


def own_group(wanted: bool) -> None:
    """With ``wanted``, this process starts a session of its own. Linux's autogroup
    scheduling (on by default) shares the cores fairly between sessions first, then
    between the processes of each. The load processes share the benchmark's session, one
    group against the service's (the moonshot's, where it can, sit further back:
    ``Backseat``); an instrument (the probe that reads the streams timed,
    the sender that confirms them) in that group would wait its turn behind the load's
    work, where a browser, or a phone, elsewhere waits behind no one's. Out of the
    benchmark's session, Ctrl-C no longer reaches the process: it ends when the
    benchmark does (PR_SET_PDEATHSIG)."""
    if wanted:
        os.setsid()
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class Backseat:
    """A cpu cgroup of the least weight (``cpu.shares`` 2 against the 1,024 of every
    session's group) for the load processes that hold the streams: they run on what the
    service and the instruments leave of the cores, as browsers on other machines take
    none of the service's. Where the cpu controller cannot be written (no root, or a
    cgroup v2 hierarchy only), nothing changes and ``available`` is False: the load shares
    the benchmark's session, as ``own_group`` describes."""

    def __init__(self, root: Path = CPU_CGROUP) -> None:
        self.root, self.path = root, root / f"qrlogin-bench-load-{os.getpid()}"
        try:
            self.path.mkdir()
            (self.path / "cpu.shares").write_text(str(LEAST_SHARES))
        except OSError:
            self.available = False
        else:
            self.available = True

    def take(self, pids: Iterable[int]) -> None:
        """Move ``pids`` (whole processes) into the cgroup."""
        for pid in pids if self.available else ():
            (self.path / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        """Give back whatever is left in the cgroup to the root, and remove it."""
        if not (self.available and self.path.exists()):
            return
        for pid in (self.path / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):  # it ended meanwhile
                (self.root / "cgroup.procs").write_text(pid)
        self.path.rmdir()


def _cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def holder(
    port: int, cookie: str, paths: list[str], commands: Queue[str], results: Queue[Any],
    reconnect: bool = False, concurrency: int = 100, cookies: dict[str, str] | None = None,
    source: str | None = None, blind: bool = False, own_session: bool = False,
) -> None:  # fmt: skip
    """Open a stream per path (``concurrency`` at a time) and report once open; then
    answer "count" (open, quiet, reconnects, the last reconnect's time), "report" (each
    stream's events), "check" (how many streams had an event within 15 s, and how many
    not) and "stop" (each stream's events, errors, reconnect times). ``blind``: see
    ``Stream``. With ``reconnect``, a stream the server ends comes back after its
    ``retry:`` hint, as EventSource does. ``cookies`` gives a path its own cookie;
    ``source`` is the address to connect from; ``own_session``: see ``own_group``."""
    cookies = cookies or {}
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    async def run() -> None:
        gate = asyncio.Semaphore(concurrency)
        streams = [Stream(path, blind=blind) for path in paths]
        reconnects: list[float] = []
        errors: list[str] = []

        async def keep(stream: Stream) -> None:
            async with gate:
                try:
                    own = cookies.get(stream.path, cookie)
                    ended = await open_stream(port, stream, own, source=source)
                except (OSError, ConnectionError) as e:
                    errors.append(f"open: {e}")
                    return
            while True:
                await ended
                if not reconnect or (stream.events and stream.events[-1][1] not in (WAIT, SCANNED)):
                    return
                await asyncio.sleep(stream.retry_ms / 1000 if stream.retry_ms else 0.5)
                while True:
                    try:
                        ended = await open_stream(port, stream, cookie, "1", source=source)
                        reconnects.append(time.time())
                        break
                    except (OSError, ConnectionError):
                        await asyncio.sleep(0.2)

        started = time.time()
        tasks = [asyncio.create_task(keep(s)) for s in streams]
        while sum(1 for s in streams if s.opened_at) + len(errors) < len(streams):
            await asyncio.sleep(0.05)
        opened = [s.opened_at for s in streams if s.opened_at]
        gc.freeze()  # the streams live to the end: no full collection walks them
        results.put(("open", len(opened), len(errors), max(opened, default=started) - started))
        loop = asyncio.get_running_loop()
        while (command := await loop.run_in_executor(None, commands.get)) != "stop":
            results.put(await _answer(command, streams, reconnects))
        results.put(("done", {s.path: s.events for s in streams}, errors[:5], reconnects))
        for s in streams:
            if s.transport is not None:
                s.transport.close()
        for task in tasks:
            task.cancel()

    _run(run(), own_session=own_session)


async def _answer(command: str, streams: list[Stream], reconnects: list[float]) -> tuple[Any, ...]:
    """A holder's answer to "count", "report" or "check"."""
    if command == "count":
        now, live = time.time(), [s for s in streams if s.opened_at and not s.ended]
        quiet = sum(1 for s in live if now - s.last_seen > QUIET_S)
        return ("count", len(live), quiet, len(reconnects), max(reconnects, default=0.0))
    if command == "report":
        return ("report", {s.path: s.events for s in streams if s.events})
    deadline = time.time() + 15
    while time.time() < deadline and not all(s.events for s in streams if s.opened_at):
        await asyncio.sleep(0.1)
    delivered = sum(1 for s in streams if s.events)
    return ("checked", delivered, len(streams) - delivered)


def sender(
    port: int, token: str, calls: list[tuple[str, str, str, Any]], rate: float,
    results: Queue[Any], timed: bool = False, own_session: bool = False,
) -> None:  # fmt: skip
    """Send (key, method, path, body) calls as the phone at ``rate`` per second, on 40
    keep-alive connections opened (a /healthz each) before the first, as an app's are by
    the time it confirms. Reports, by key, when each was sent and its status, and the
    rate achieved. ``timed``: first reports "ready", and then also the CPU it used from
    its first call (its start left out). ``own_session``: see ``own_group``."""

    async def run() -> tuple[dict[str, tuple[float, int]], float, float]:
        conns = [Connection(HOST, port) for _ in range(40)]
        await asyncio.gather(*(c.request("GET", "/healthz") for c in conns))
        await asyncio.sleep(WARM_S)
        if timed:
            results.put(("ready",))
        began = _cpu_s()
        pool: asyncio.Queue[Connection] = asyncio.Queue()
        for c in conns:
            pool.put_nowait(c)
        sent: dict[str, tuple[float, int]] = {}
        headers = {"Authorization": f"Bearer {token}"}

        async def one(key: str, method: str, path: str, body: Any) -> None:
            conn = await pool.get()
            at = time.time()
            try:
                sent[key] = (at, (await conn.request(method, path, body, headers)).status)
            except (OSError, asyncio.IncompleteReadError):
                sent[key] = (at, 0)
                conn.close()
            pool.put_nowait(conn)

        start = time.perf_counter()
        tasks = []
        for n, call in enumerate(calls):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(*call)))
        await asyncio.gather(*tasks)
        return sent, len(calls) / (time.perf_counter() - start), _cpu_s() - began

    sent, achieved, cpu = _run(run(), own_session=own_session)
    results.put(("sent", sent, achieved, cpu))


def steps(plan: list[tuple[str, str]]) -> list[tuple[str, str, str, Any]]:
    """``sender``'s calls for (qr_id, step) pairs."""
    return [(q, "POST", "/v1/accounts/qrcode_fill", {"id": q, "step": s}) for q, s in plan]


def repeat(
    port: int, kind: str, arg: str, seconds: float, connections: int, rate: float,
    results: Queue[Any], until: int = 0,
) -> None:  # fmt: skip
    """For ``seconds`` (or until ``until`` are made) on ``connections`` keep-alive
    connections, as fast as answered (or at ``rate`` per second): "create" QR codes bound
    to the cookie ``arg`` (reports their ids), "get" the path ``arg`` (reports how many
    answered 200), or "login" whole logins with the user token ``arg`` (reports their
    login tokens, and how many failed; "login+stream": each QR's stream opened too)."""

    async def run() -> tuple[list[str], int, int, float]:
        ids: list[str] = []
        done = failed = 0
        start = time.perf_counter()
        deadline = start + seconds
        headers = {"Authorization": f"Bearer {arg}"}

        async def loop(offset: int) -> None:
            nonlocal done, failed
            conn = Connection(HOST, port, arg if kind == "create" else "")
            phone = Connection(HOST, port)
            n = offset
            while time.perf_counter() < deadline and not (until and len(ids) >= until):
                if rate:
                    await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
                    n += connections
                if kind == "create":
                    answer = await conn.request("POST", "/v1/accounts/qrcode/", {"platform": "bench"})
                    if answer.status == 201:
                        ids.append(answer.json()["data"]["id"])
                elif kind == "get":
                    answer = await conn.request("GET", arg)  # awaited before ``done`` is read
                    done += answer.status == 200
                elif token := (await log_in(conn, phone, headers, kind == "login+stream")).get("token"):
                    ids.append(token)
                    done += 1
                else:
                    failed += 1
            conn.close()
            phone.close()

        await asyncio.gather(*(loop(i) for i in range(connections)))
        return ids, done, failed, time.perf_counter() - start

    results.put(_run(run()))


async def log_in(browser: Connection, phone: Connection, headers: dict[str, str], stream: bool = False) -> Any:
    """One whole login: create, (``stream``: the QR's stream opened, its first event read,
    closed,) scan, confirm, redeem; the redemption's data."""
    created = await browser.request("POST", "/v1/accounts/qrcode/", {"platform": "b"})
    qr_id = created.json()["data"]["id"]
    if stream:
        reader, writer = await asyncio.open_connection(browser.host, browser.port)
        writer.write(f"GET /v1/accounts/qrcode/{qr_id}/events HTTP/1.1\r\nHost: {HOST}\r\n"
                     f"Accept: text/event-stream\r\nCookie: qrlogin_bind={browser.cookie}\r\n\r\n".encode())  # fmt: skip
        await reader.readuntil(b"data:")
        writer.close()
    for step in ("SCAN", "VERIFY"):
        body = {"id": qr_id, "step": step}
        await phone.request("POST", "/v1/accounts/qrcode_fill", body, headers)
    return (await browser.request("POST", "/v1/passport/guest", {"code": qr_id})).json()["data"]


def poller(port: int, cookie: str, qr_ids: list[str], long_poll: bool, results: Queue[Any]) -> None:
    """Poll each QR (1 s apart, or long polls) until it reports success, for at most a
    minute; report when, and after how many requests."""

    async def run() -> dict[str, tuple[float, int]]:
        seen: dict[str, tuple[float, int]] = {}
        deadline = time.monotonic() + 60

        async def watch(qr_id: str) -> None:
            conn, status = Connection(HOST, port, cookie), WAIT
            await asyncio.sleep(random.uniform(0, 1))  # noqa: S311 (spread the pollers)
            while time.monotonic() < deadline:
                body: dict[str, Any] = {"code": qr_id}
                if long_poll:
                    body.update(wait=min(25, max(1, int(deadline - time.monotonic()))), since=status)
                data = (await conn.request("POST", "/v1/passport/guest", body)).json().get("data") or {}
                status = data.get("status", status)
                if "token" in data or status not in (WAIT, SCANNED):
                    seen[qr_id] = (time.time(), conn.requests)
                    break
                if not long_poll:
                    await asyncio.sleep(1)
            conn.close()

        await asyncio.gather(*(watch(q) for q in qr_ids))
        return seen

    results.put(_run(run()))


# ---- running them ---------------------------------------------------------------------


def run(target: Callable[..., None], *args: Any, **kw: Any) -> Any:
    """Run a load function in a process of its own; what it reports."""
    return run_parallel(target, [args], **kw)[0]


def run_parallel(target: Callable[..., None], argsets: list[tuple[Any, ...]], **kw: Any) -> list[Any]:
    """Run ``target`` once per argument tuple, each in its own process, at once."""
    results = CTX.Queue()
    processes = [CTX.Process(target=target, args=(*a, results), kwargs=kw, daemon=True) for a in argsets]
    for process in processes:
        process.start()
    answers = [results.get(timeout=900) for _ in processes]
    for process in processes:
        process.join(30)
    return answers


class Holders:
    """Load processes each holding a share of the streams; ``sources``: the addresses the
    processes connect from, in turn."""

    def __init__(
        self, port: int, cookie: str, paths: list[str], processes: int = 2,
        sources: list[str] | None = None, **kw: Any,
    ) -> None:  # fmt: skip
        self.results = CTX.Queue()
        self.commands = [CTX.Queue() for _ in range(processes)]
        self.processes = []
        for n, commands in enumerate(self.commands):
            share = paths[n::processes]
            if sources:
                kw["source"] = sources[n % len(sources)]
            process = CTX.Process(
                target=holder, args=(port, cookie, share, commands, self.results), kwargs=kw, daemon=True
            )
            process.start()
            self.processes.append(process)

    def opened(self) -> tuple[int, int, float]:
        """Streams opened, errors, and the seconds the slowest process took."""
        reports = [self.results.get(timeout=600) for _ in self.processes]
        return sum(r[1] for r in reports), sum(r[2] for r in reports), max(r[3] for r in reports)

    def ask(self, command: str) -> list[Any]:
        """Send ``command`` to every process; their answers."""
        for commands in self.commands:
            commands.put(command)
        return [self.results.get(timeout=600) for _ in self.processes]

    def finish(self, command: str = "stop") -> list[Any]:
        reports = self.ask(command)
        for process in self.processes:
            process.join(30)
        return reports

    def events(self, command: str = "report") -> dict[str, list[tuple[float, str]]]:
        """Every stream's events, by path (``stop``: and the processes end)."""
        seen: dict[str, list[tuple[float, str]]] = {}
        for answer in self.finish(command) if command == "stop" else self.ask(command):
            seen.update(answer[1])
        return seen
