"""Waiting on a QR: the one loop behind the SSE stream and the long poll.

``follow`` yields every newer state of a QR as the hub delivers it. The hub's events
are trusted as they come; when the hub asks for a re-read (a resubscription, a
message it could not parse) or the QR's deadline passes, the store is read again,
since the store is the truth and turns an overdue QR into QRCODE_EXPIRE.
"""

from __future__ import annotations

import enum
import math
import socket
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
    """
    now = time.monotonic()
    deadline = math.inf if wait_s is None else now + wait_s
    next_tick = math.inf if tick_s is None else now + tick_s
    current = first
    with hub.watch(channel, first.version) as waiter, _watch_client(client, waiter) as unwatch:
        while current.status not in final:
            now = time.monotonic()
            if now >= deadline:
                return
            # Past the deadline by our clock but not yet by Redis': look again soon.
            until_expiry = max(current.expire - time.time(), RECHECK_S)
            waiter.wait(max(0.0, min(next_tick - now, deadline - now, until_expiry)))
            if waiter.closed:
                yield Signal.CLOSING
                return
            if waiter.poked:
                waiter.poked = False
                if client is not None and _went_away(client):
                    return
                unwatch()  # it sent something instead (pipelined): stop looking
            newer, resync = waiter.take()
            if resync or time.time() >= current.expire:
                try:
                    newer = Published(read())
                except UNAVAILABLE_ERRORS:
                    newer = None  # the hub wakes us again once Redis is back
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


@contextmanager
def _watch_client(client: socket.socket | None, waiter: Waiter) -> Iterator[Callable[[], None]]:
    """Poke ``waiter`` when its client's socket turns readable: a browser that goes away
    closes it, and its slot is freed at once rather than at the next write. Yields the
    function that stops the watching."""
    if client is None:
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


def _went_away(client: socket.socket) -> bool:
    """True when the peer closed the connection (it is readable and at its end)."""
    try:
        return client.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
