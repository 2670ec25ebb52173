"""Waiting on a QR (or a session, a user's notices): the one loop behind every stream
and the long poll.

``follow`` yields every newer state of a QR as the hub delivers it. The hub's events
are trusted as they come; when the hub asks for a re-read (a resubscription, a
message it could not parse) or the QR's deadline passes, the store is read again,
since the store is the truth and turns an overdue QR into QRCODE_EXPIRE.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import math
import socket
import ssl
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager

from qrlogin.config import RECHECK_S
from qrlogin.engine import UNAVAILABLE_ERRORS
from qrlogin.exceptions import Forbidden, NotFound
from qrlogin.hub import Hub, Waiter
from qrlogin.messages import Published
from qrlogin.models import FINAL, Snapshot


class Signal(enum.Enum):
    """What ``follow`` yields when there is no new state."""

    #: ``tick_s`` passed with nothing new (the stream sends its heartbeat).
    TICK = "tick"
    #: The process is stopping: the waiter should tell its client to come back.
    CLOSING = "closing"


def follow(
    hub: Hub,
    channel: str,
    first: Snapshot,
    read: Callable[[], Snapshot],
    *,
    final: frozenset[str] = FINAL,
    tick_s: float | None = None,
    wait_s: float | None = None,
    client: socket.socket | None = None,
) -> Generator[Published | Signal, None, None]:
    """Yield each state behind ``channel`` newer than ``first`` (read at ``first.version``),
    until a status in ``final``.

    Also yields ``Signal.TICK`` every ``tick_s`` without news, and ``Signal.CLOSING``
    (then ends) when the hub shuts down. Ends after a final status, after ``wait_s``,
    when the state is gone or no longer the caller's, or as soon as ``client`` (the
    connection, when the server gives it) is closed by the browser.
    ``read`` reads the store.

    (``follow_many`` does the same for several channels; this one keeps a single
    stream's state small, since a worker holds thousands of them.)
    """
    now = time.monotonic()
    deadline = math.inf if wait_s is None else now + wait_s
    next_tick = math.inf if tick_s is None else now + tick_s
    current = first
    with hub.watch(channel, first.version) as waiter, _watch_client(client, waiter) as unwatch:
        while current.status not in final:
            if time.monotonic() >= deadline:
                return
            waiter.wait(_pause(next_tick, deadline, current.expire))
            stop = _interrupted(waiter, client, unwatch)
            if stop is not None:
                yield from stop
                return
            try:
                newer = _newer(waiter, current, read)
            except (NotFound, Forbidden):
                return
            if newer is not None and newer.snapshot.version == current.version:
                current = newer.snapshot  # the same state, perhaps with a later deadline
            elif newer is not None and newer.snapshot.version > current.version:
                current = newer.snapshot
                waiter.version = current.version
                yield newer
            elif time.monotonic() >= next_tick:
                next_tick = time.monotonic() + (tick_s or math.inf)
                yield Signal.TICK


def follow_many(
    hub: Hub,
    first: dict[str, Snapshot],
    read: Callable[[str], Snapshot],
    *,
    final: frozenset[str] = FINAL,
    tick_s: float | None = None,
    client: socket.socket | None = None,
) -> Generator[tuple[str, Published | None] | Signal, None, None]:
    """``follow`` for several channels on one client connection (a browser's tabs share
    one stream): yields ``(channel, newer state)``, or ``(channel, None)`` when a state
    is gone or no longer the caller's. Ends when every channel reached a status in
    ``final`` (or is gone). ``read(channel)`` reads the store."""
    import gevent.event

    next_tick = math.inf if tick_s is None else time.monotonic() + tick_s
    current = dict(first)
    news = gevent.event.Event()  # every waiter of this client sets the same one
    with contextlib.ExitStack() as stack:
        waiters = {
            channel: stack.enter_context(hub.watch(channel, snapshot.version, news))
            for channel, snapshot in first.items()
        }
        live = [c for c, s in current.items() if s.status not in final]
        if not live:
            return
        any_waiter = waiters[live[0]]
        unwatch = stack.enter_context(_watch_client(client, any_waiter))
        while live:
            soonest = min(current[c].expire for c in live)
            any_waiter.wait(_pause(next_tick, math.inf, soonest))
            stop = _interrupted(any_waiter, client, unwatch)
            if stop is not None:
                yield from stop
                return
            delivered = False
            for channel in list(live):
                waiter = waiters[channel]
                try:
                    newer = _newer(waiter, current[channel], functools.partial(read, channel))
                except (NotFound, Forbidden):
                    live.remove(channel)
                    yield channel, None
                    continue
                if newer is not None and newer.snapshot.version >= current[channel].version:
                    fresh = newer.snapshot.version > current[channel].version
                    current[channel] = newer.snapshot
                    if fresh:
                        waiter.version = newer.snapshot.version
                        delivered = True
                        yield channel, newer
                        if newer.snapshot.status in final:
                            live.remove(channel)
            if not delivered and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + (tick_s or math.inf)
                yield Signal.TICK


def _pause(next_tick: float, deadline: float, expire: float) -> float:
    """How long to wait for news: until the next heartbeat, the deadline, or the QR's
    expiry (past it by our clock but not yet by Redis': look again soon)."""
    now = time.monotonic()
    until_expiry = max(expire - time.time(), RECHECK_S)
    return max(0.0, min(next_tick - now, deadline - now, until_expiry))


def _interrupted(
    waiter: Waiter, client: socket.socket | None, unwatch: Callable[[], None]
) -> list[Signal] | None:
    """What ends the wait before any news: the process stopping (``[CLOSING]``), the
    client gone (``[]``); None to go on."""
    if waiter.closed:
        return [Signal.CLOSING]
    if waiter.poked:
        waiter.poked = False
        if client is not None and _went_away(client):
            return []
        unwatch()  # it sent something instead (pipelined): stop looking
    return None


def _newer(waiter: Waiter, current: Snapshot, read: Callable[[], Snapshot]) -> Published | None:
    """What the hub brought ``waiter``; the store's state instead when the hub asks for a
    re-read or the deadline passed (``NotFound``, ``Forbidden``: it is gone)."""
    newer, resync = waiter.take()
    if resync or time.time() >= current.expire:
        try:
            return Published(read())
        except UNAVAILABLE_ERRORS:
            return None  # the hub wakes us again once Redis is back
    return newer


@contextmanager
def _watch_client(
    client: socket.socket | None, waiter: Waiter | None
) -> Iterator[Callable[[], None]]:
    """Poke ``waiter`` when its client's socket turns readable: a browser that goes away
    closes it, and its slot is freed at once rather than at the next write. Yields the
    function that stops the watching."""
    if client is None or waiter is None:
        yield lambda: None
        return
    import gevent

    watcher = gevent.get_hub().loop.io(client.fileno(), 1)
    watcher.start(waiter.poke)
    try:
        yield watcher.stop
    finally:
        watcher.stop()
        watcher.close()


def is_tls(sock: socket.socket) -> bool:
    """Whether ``sock`` speaks TLS (the standard library's or gevent's TLS socket)."""
    import gevent.ssl

    return isinstance(sock, ssl.SSLSocket | gevent.ssl.SSLSocket)


def _went_away(client: socket.socket) -> bool:
    """True when the peer closed the connection (it is readable and at its end)."""
    try:
        if not is_tls(client):
            return client.recv(1, socket.MSG_PEEK) == b""
        # TLS cannot peek, and what made the socket readable may be a TLS record with no
        # data in it: read without waiting. A browser that leaves sends close_notify or
        # just closes, and both read as the end.
        timeout = client.gettimeout()
        client.settimeout(0)
        try:
            return client.recv(1) == b""
        except (ssl.SSLWantReadError, BlockingIOError, TimeoutError):
            return False
        finally:
            client.settimeout(timeout)
    except OSError:
        return True
