"""Load client processes: each runs its own asyncio loop and talks to the parent by queue.

holder: opens and keeps SSE streams, records when each status arrives, reconnects
        when asked to (as EventSource does, after the server's ``retry:`` hint).
stepper: sends mobile steps at a fixed rate and records when each was sent.
poller: polls /v1/passport/guest (short or long) until success, as the seed's page does.
creator: creates QR codes (or whole logins) as fast as it can for a while.
"""

from __future__ import annotations

import asyncio
import gc
import os
import random
import resource
import time
from collections.abc import Callable, Coroutine
from multiprocessing.queues import Queue
from typing import Any, TypeVar

import uvloop

from bench.http import Connection, Stream, open_stream
from qrlogin.models import SCANNED, WAIT

HOST = "127.0.0.1"
T = TypeVar("T")
#: A stream that heard nothing (not even a heartbeat) for this long counts as quiet (s).
QUIET_S = 40.0
#: The pause between a paced sender's opening its connections and its first call (s).
WARM_S = 0.5


def _run(main: Coroutine[Any, Any, T]) -> T:
    """Run a load process's loop: uvloop's, unless QRLOGIN_BENCH_LOOP=asyncio.

    The load shares the machine's two cores with the service. uvloop runs the same
    protocols for less of them, so more of the cores' time goes to what is measured."""
    if os.environ.get("QRLOGIN_BENCH_LOOP") == "asyncio":
        return asyncio.run(main)
    ran: T = uvloop.run(main)
    return ran


def _lift_fd_limit() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def holder(
    port: int,
    cookie: str,
    paths: list[str],
    commands: Queue[str],
    results: Queue[Any],
    reconnect: bool = False,
    concurrency: int = 100,
    cookies: dict[str, str] | None = None,
    source: str | None = None,
) -> None:
    """Open a stream per path; report once open; on "stop" report what each saw.
    ``cookies`` gives a path its own cookie (a ``name=value`` pair); ``source`` is the
    address to connect from (each gives about 28,000 ports).

    Also, without stopping: on "count", how many streams are open, how many have heard
    nothing for ``QUIET_S``, how many reconnects and when the last was; on "report", the
    events of every stream that had one."""
    cookies = cookies or {}
    _lift_fd_limit()

    async def run() -> None:
        gate = asyncio.Semaphore(concurrency)
        streams = [Stream(path) for path in paths]
        reconnects: list[float] = []
        errors: list[str] = []

        async def keep(stream: Stream) -> None:
            async with gate:
                try:
                    ended = await open_stream(
                        HOST, port, stream.qr_id, cookies.get(stream.qr_id, cookie), stream,
                        source=source,
                    )  # fmt: skip
                except (OSError, ConnectionError) as e:
                    errors.append(f"open: {e}")
                    return
            while True:
                await ended
                final = stream.events and stream.events[-1][1] not in (
                    WAIT,
                    SCANNED,
                )
                if not reconnect or final:
                    return
                await asyncio.sleep(stream.retry_ms / 1000 if stream.retry_ms else 0.5)
                while True:
                    try:
                        ended = await open_stream(
                            HOST, port, stream.qr_id, cookie, stream, "1", source=source
                        )
                        reconnects.append(time.time())
                        break
                    except (OSError, ConnectionError):
                        await asyncio.sleep(0.2)

        started = time.time()
        tasks = [asyncio.create_task(keep(s)) for s in streams]
        while sum(1 for s in streams if s.opened_at) + len(errors) < len(streams):
            await asyncio.sleep(0.05)
        opened = [s.opened_at for s in streams if s.opened_at]
        # The streams' objects live until the end: a full collection over them stopped
        # a process holding 12,500 for 0.3 to 0.5 s while its streams' events waited.
        gc.freeze()
        results.put(("open", len(opened), len(errors), max(opened, default=started) - started))
        loop = asyncio.get_running_loop()
        while (command := await loop.run_in_executor(None, commands.get)) != "stop":
            if command == "count":
                now = time.time()
                live = [s for s in streams if s.opened_at and not s.ended]
                quiet = sum(1 for s in live if now - s.last_seen > QUIET_S)
                results.put(
                    ("count", len(live), quiet, len(reconnects), max(reconnects, default=0.0))
                )
            elif command == "report":
                results.put(("report", {s.qr_id: s.events for s in streams if s.events}))
        waiting = (WAIT, SCANNED)
        dropped = sum(
            1
            for s in streams
            if s.error or (s.ended and (not s.events or s.events[-1][1] in waiting))
        )
        results.put(
            (
                "done",
                {s.qr_id: s.events for s in streams},
                dropped,
                errors[:5],
                reconnects,
            )
        )
        for s in streams:
            if s.transport is not None:
                s.transport.close()
        for task in tasks:
            task.cancel()

    _run(run())


async def _paced(
    port: int,
    token: str,
    calls: list[tuple[str, str, str, Any]],
    rate: float,
    connections: int = 40,
    ready: Callable[[], None] | None = None,
) -> tuple[dict[str, tuple[float, int]], float]:
    """Send (key, method, path, body) calls as the phone at ``rate`` per second; when each
    was sent and its status, by key, and the rate achieved. ``ready`` is called just
    before the first."""
    # The phone's connections are open before its first step (a /healthz each), as an
    # app's are by the time it confirms: the first steps do not time a connect.
    conns = [Connection(HOST, port) for _ in range(connections)]
    await asyncio.gather(*(c.request("GET", "/healthz") for c in conns))
    await asyncio.sleep(WARM_S)
    if ready is not None:
        ready()
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for c in conns:
        pool.put_nowait(c)
    sent: dict[str, tuple[float, int]] = {}
    headers = {"Authorization": f"Bearer {token}"}

    async def one(key: str, method: str, path: str, body: Any) -> None:
        conn = await pool.get()
        at = time.time()
        try:
            answer = await conn.request(method, path, body, headers)
            sent[key] = (at, answer.status)
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
    return sent, len(calls) / (time.perf_counter() - start)


def _steps(plan: list[tuple[str, str]]) -> list[tuple[str, str, str, Any]]:
    return [
        (qr_id, "POST", "/v1/accounts/qrcode_fill", {"id": qr_id, "step": step})
        for qr_id, step in plan
    ]


def stepper(
    port: int, token: str, plan: list[tuple[str, str]], rate: float, results: Queue[Any]
) -> None:
    """Send (qr_id, step) at ``rate`` per second; report the send time and status of each."""
    sent, achieved = _run(_paced(port, token, _steps(plan), rate))
    results.put(("sent", sent, achieved))


def timed_stepper(
    port: int, token: str, plan: list[tuple[str, str]], rate: float, results: Queue[Any]
) -> None:
    """``stepper`` for a measured window: reports "ready" just before its first step, and
    with its answers the CPU it used from there (seconds): its start is left out."""
    began: list[float] = []

    def ready() -> None:
        began.append(_cpu_s())
        results.put(("ready",))

    sent, achieved = _run(_paced(port, token, _steps(plan), rate, ready=ready))
    results.put(("sent", sent, achieved, _cpu_s() - began[0]))


def _cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)
    return used.ru_utime + used.ru_stime


def revoker(port: int, token: str, sids: list[str], rate: float, results: Queue[Any]) -> None:
    """End sessions from the phone at ``rate`` per second; report when each was sent."""
    calls = [(sid, "DELETE", f"/v1/accounts/sessions/{sid}", None) for sid in sids]
    sent, achieved = _run(_paced(port, token, calls, rate))
    results.put(("sent", sent, achieved))


def creator(
    port: int, cookie: str, seconds: float, connections: int, rate: float, results: Queue[Any]
) -> None:
    """Create QR codes for ``seconds`` (as fast as possible, or at ``rate`` per second)."""

    async def run() -> None:
        ids: list[str] = []
        deadline = time.perf_counter() + seconds
        start = time.perf_counter()

        async def loop(conn: Connection, offset: int) -> None:
            n = offset
            while time.perf_counter() < deadline:
                if rate:
                    delay = start + n / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    n += connections
                answer = await conn.request("POST", "/v1/accounts/qrcode/", {"platform": "bench"})
                if answer.status == 201:
                    ids.append(answer.json()["data"]["id"])

        conns = [Connection(HOST, port, cookie) for _ in range(connections)]
        await asyncio.gather(*(loop(c, i) for i, c in enumerate(conns)))
        for c in conns:
            c.close()
        results.put(("created", ids, time.perf_counter() - start))

    _run(run())


async def _log_in(browser: Connection, phone: Connection, headers: dict[str, str]) -> Any:
    """One whole login: create, scan, confirm, redeem; the redemption's data."""
    qr_id = (await browser.request("POST", "/v1/accounts/qrcode/", {"platform": "b"})).json()[
        "data"
    ]["id"]
    for step in ("SCAN", "VERIFY"):
        await phone.request(
            "POST", "/v1/accounts/qrcode_fill", {"id": qr_id, "step": step}, headers
        )
    return (await browser.request("POST", "/v1/passport/guest", {"code": qr_id})).json()["data"]


def login_loop(port: int, token: str, seconds: float, flows: int, results: Queue[Any]) -> None:
    """Whole logins (create, scan, verify, redeem) back to back on ``flows`` connections."""

    async def run() -> None:
        done = 0
        failed = 0
        deadline = time.perf_counter() + seconds
        headers = {"Authorization": f"Bearer {token}"}

        async def flow() -> None:
            nonlocal done, failed
            browser, phone = Connection(HOST, port), Connection(HOST, port)
            while time.perf_counter() < deadline:
                if "token" in await _log_in(browser, phone, headers):
                    done += 1
                else:
                    failed += 1
            browser.close()
            phone.close()

        start = time.perf_counter()
        await asyncio.gather(*(flow() for _ in range(flows)))
        results.put(("logins", done, failed, time.perf_counter() - start))

    _run(run())


def login_many(port: int, token: str, count: int, flows: int, results: Queue[Any]) -> None:
    """``count`` whole logins, each from a browser of its own; report their login tokens."""

    async def run() -> None:
        tokens: list[str] = []
        headers = {"Authorization": f"Bearer {token}"}
        remaining = iter(range(count))

        async def flow() -> None:
            phone = Connection(HOST, port)
            for _ in remaining:
                browser = Connection(HOST, port)
                tokens.append((await _log_in(browser, phone, headers))["token"])
                browser.close()
            phone.close()

        await asyncio.gather(*(flow() for _ in range(flows)))
        results.put(("tokens", tokens))

    _run(run())


def poller(
    port: int,
    cookie: str,
    qr_ids: list[str],
    long_poll: bool,
    results: Queue[Any],
    interval_s: float = 1.0,
) -> None:
    """Poll each QR until it reports success (for at most a minute); record when and how
    many requests it took."""

    async def run() -> None:
        seen: dict[str, tuple[float, int]] = {}
        deadline = time.monotonic() + 60

        async def watch(qr_id: str) -> None:
            conn = Connection(HOST, port, cookie)
            status = WAIT
            await asyncio.sleep(random.uniform(0, interval_s))  # noqa: S311 (spread the pollers)
            while time.monotonic() < deadline:
                body: dict[str, Any] = {"code": qr_id}
                if long_poll:
                    body.update(
                        wait=min(25, max(1, int(deadline - time.monotonic()))), since=status
                    )
                answer = await conn.request("POST", "/v1/passport/guest", body)
                data = answer.json().get("data") or {}
                status = data.get("status", status)
                if "token" in data or status not in (WAIT, SCANNED):
                    seen[qr_id] = (time.time(), conn.requests)
                    break
                if not long_poll:
                    await asyncio.sleep(interval_s)
            conn.close()

        await asyncio.gather(*(watch(q) for q in qr_ids))
        results.put(("polled", seen))

    _run(run())


def blind_holder(
    port: int,
    paths: list[str],
    commands: Queue[str],
    results: Queue[Any],
    concurrency: int = 100,
) -> None:
    """For flask-sse, which sends nothing until a message comes: send each request, then
    on "check" wait for one message on every stream and report how many got it."""
    _lift_fd_limit()

    async def run() -> None:
        gate = asyncio.Semaphore(concurrency)
        conns: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        errors = 0

        async def one(path: str) -> None:
            nonlocal errors
            async with gate:
                try:
                    reader, writer = await asyncio.open_connection(HOST, port)
                    writer.write(
                        f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAccept: text/event-stream\r\n\r\n".encode()
                    )
                    await writer.drain()
                    conns.append((reader, writer))
                except OSError:
                    errors += 1

        started = time.time()
        await asyncio.gather(*(one(p) for p in paths))
        results.put(("open", len(conns), errors, time.time() - started))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, commands.get)

        async def got_message(reader: asyncio.StreamReader) -> bool:
            try:
                await asyncio.wait_for(reader.readuntil(b"data:"), 15)
                return True
            except (TimeoutError, asyncio.IncompleteReadError, OSError, asyncio.LimitOverrunError):
                return False

        delivered = await asyncio.gather(*(got_message(r) for r, _ in conns))
        results.put(("checked", sum(delivered), len(conns) - sum(delivered) + errors))
        for _, writer in conns:
            writer.close()

    _run(run())


def hammer(port: int, path: str, seconds: float, connections: int, results: Queue[Any]) -> None:
    """GET ``path`` for ``seconds`` as fast as the service answers; how many answered 200."""

    async def run() -> None:
        deadline = time.perf_counter() + seconds
        ok = 0

        async def loop(conn: Connection) -> None:
            nonlocal ok
            while time.perf_counter() < deadline:
                answer = await conn.request("GET", path)
                ok += answer.status == 200

        conns = [Connection(HOST, port) for _ in range(connections)]
        await asyncio.gather(*(loop(c) for c in conns))
        for c in conns:
            c.close()
        results.put(("answered", ok))

    _run(run())
