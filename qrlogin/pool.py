"""The command connection pool of a process, and the reply parser its connections use."""

from __future__ import annotations

import logging
import math
import select
import time
from queue import Empty, Full
from typing import Any

import gevent
import gevent.event
import gevent.monkey
import gevent.socket
import redis
from redis._parsers import _HiredisParser

from qrlogin.hub import gevent_patched

log = logging.getLogger(__name__)


#: The system's poll(), whether or not gevent has patched the select module.
_system_poll = gevent.monkey.get_original("select", "poll")
#: What poll() says of a socket the server closed or that failed: hiredis tells these
#: apart from a reply waiting behind them.
_POLLRDHUP = getattr(select, "POLLRDHUP", 0)  # Linux's: the peer closed its side
_CLOSED = select.POLLHUP | select.POLLERR | select.POLLNVAL | _POLLRDHUP


class Parser(_HiredisParser):
    """hiredis's reply parser, with a cheaper "is a reply waiting?" check.

    The pool asks that of every connection it hands out, without waiting, to catch one
    left with an unread reply; the hub's subscriber asks it before every message it
    reads (it waits for its socket itself, where it can watch it). hiredis answers
    with ``select.poll()``, twice when the socket is readable (the second time to tell
    data from the server closing it), and under gevent that is gevent's cooperative
    poll, far dearer than the system's for a check that never waits. So the system's poll
    answers, a wait is gevent's wait for the socket to become readable, and only a
    socket that shows the server closing it or an error goes to hiredis's own check."""

    def can_read(self, timeout: float = 0) -> bool:
        # Both are set when the connection connects, and None once it disconnects.
        sock, reader = getattr(self, "_sock", None), getattr(self, "_reader", None)
        if sock is None or reader is None or reader.has_data() or hasattr(sock, "pending"):
            return bool(super().can_read(timeout))  # TLS keeps bytes the system cannot see
        events = _poll(sock)
        if not events and timeout != 0:
            if not gevent_patched():
                return bool(super().can_read(timeout))
            try:
                gevent.socket.wait_read(sock.fileno(), timeout, _Waited)
            except _Waited:
                return False
            events = _poll(sock)
        if events & _CLOSED:
            return bool(super().can_read(0))
        return bool(events)


class _Waited(Exception):
    """The wait for a reply ended without one."""


def _poll(sock: object) -> int:
    """What the system's poll() reports of ``sock`` now (0: nothing to read)."""
    poller = _system_poll()
    poller.register(sock, select.POLLIN | _POLLRDHUP)
    found = poller.poll(0)
    return int(found[0][1]) if found else 0


#: How Redis words a refused connection when it serves as many clients as it may, and
#: what the log says of it.
CLIENT_LIMIT = "max number of clients reached"
CLIENT_LIMIT_CAUSE = (
    f"Redis refused a connection ({CLIENT_LIMIT}): lower QRLOGIN_REDIS_MAX_CONNECTIONS "
    "or WEB_CONCURRENCY, or raise the plan's client limit"
)
#: How long a pool that met Redis's client limit keeps to the connections it has (seconds).
CLIENT_LIMIT_BACKOFF_S = 10.0
#: Connections a pool keeps open however long they wait; past these, a connection unused
#: this long is closed (seconds), so that a burst's extra connections go back to Redis,
#: where another process may need them under a small client limit.
CORE_CONNECTIONS = 2
SPARE_IDLE_S = 5.0
#: After a connection opened aside failed, requests open their own for this long (s):
#: each meets Redis's answer (an error) itself, and no greenlet retries in a loop.
GROW_RETRY_S = 1.0


class Pool(redis.BlockingConnectionPool):
    """The command pool: bounded (QRLOGIN_REDIS_MAX_CONNECTIONS), and a request waits for
    a free connection rather than open one past the bound. When Redis refuses a new
    connection for its client limit (a small managed plan), the pool keeps to the
    connections it has for a while: the request that met the refusal, and those after
    it, wait for one of them, instead of each opening a connection to be refused too.
    Connections past the first ``CORE_CONNECTIONS`` close once unused for
    ``SPARE_IDLE_S``: a burst's extra connections go back to Redis. A timer closes them
    (under gevent, as the service runs), since a process whose burst is over may have no
    request to look for them.

    A new connection is dear: a name lookup (under gevent, in a thread that waits its turn
    for the interpreter), TCP (and TLS) and a handshake of commands, tens of milliseconds
    under load, while a command takes well under one. So, under gevent, a request that
    finds no open connection free while others are in use does not open one itself: a
    greenlet opens it aside, and the request takes the first connection put back, the
    new one or one in use, whichever comes first. A burst grows the pool without its
    requests waiting on connects. With no connection in use, or while opening one fails
    (Redis away), the request opens one itself, so that a failure reaches it as before."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)  # type: ignore[no-untyped-call]
        self._retired: list[Any] = []  # slots set aside, each a place in the queue
        self._retired_until = 0.0
        self._reaper: Any = None  # the timer's greenlet, while there are spares
        self._growing = 0  # connections being opened aside
        self._grow_failed_at = -math.inf
        self._put_back = gevent.event.Event()  # set (and replaced) at each connection put back

    def get_connection(self, *args: Any, **options: Any) -> Any:
        if self._retired and time.monotonic() >= self._retired_until:
            self._restore()
        try:
            return self._take(*args, **options)
        except redis.exceptions.ConnectionError as error:
            if CLIENT_LIMIT not in str(error) or not self._retire():
                raise
            return self._take(*args, **options)

    def _take(self, *args: Any, **options: Any) -> Any:
        """A connection: an open one free now; else, while others are in use, the first
        put back after one more is opened aside; else redis-py's way (it waits for a
        slot, and opens the connection there itself)."""
        deadline = time.monotonic() + self.timeout
        while True:
            stack = self.pool.queue  # LIFO: the most recently put back is last
            if not stack or _connected(stack[-1]) or not self._may_grow_aside():
                return super().get_connection(*args, **options)  # type: ignore[no-untyped-call]
            slot = self.pool.get_nowait()  # a placeholder, or a connection closed since
            self._growing += 1
            gevent.spawn(self._grow, slot)
            if not self._put_back.wait(deadline - time.monotonic()):
                raise redis.exceptions.ConnectionError("No connection available.")

    def _may_grow_aside(self) -> bool:
        """Whether a connection in use will come back (so that a request may wait for it
        rather than for a connect): under gevent, while Redis lately took connections."""
        in_use = self.max_connections - len(self._retired) - self.pool.qsize() - self._growing
        return (
            in_use > 0
            and gevent_patched()
            and time.monotonic() - self._grow_failed_at >= GROW_RETRY_S
        )

    def _grow(self, slot: Any) -> None:
        """Open a connection in ``slot`` (a placeholder: a new one) and put it back."""
        connection = slot
        try:
            if connection is None:
                connection = self.make_connection()  # type: ignore[no-untyped-call]
            connection.connect()
        except Exception as error:  # a request opening one itself meets it: see _take
            log.debug("opening a Redis connection aside failed: %s", error)
            self._grow_failed_at = time.monotonic()
        else:
            connection.qrlogin_released = time.monotonic()
        finally:
            try:
                self.pool.put_nowait(connection)
            except Full:  # the pool was reset meanwhile (redis-py does, in a forked child)
                if connection is not None:
                    connection.disconnect()
            self._growing -= 1
            self._spares_timer()
            self._wake()

    def _wake(self) -> None:
        """Wake the requests waiting for a connection put back."""
        put_back, self._put_back = self._put_back, gevent.event.Event()
        put_back.set()

    def _retire(self) -> bool:
        """Set aside the refused connection's slot (the queue's last), unless it is the
        last slot left; whether it did."""
        if self.max_connections - len(self._retired) <= 1:
            return False
        try:
            slot = self.pool.get_nowait()
        except Empty:
            return False
        if slot is not None and _connected(slot):
            self.pool.put_nowait(slot)  # a working connection: not the refused one
            return False
        self._retired.append(slot)
        self._retired_until = time.monotonic() + CLIENT_LIMIT_BACKOFF_S
        log.warning(
            "%s; this process keeps to %d connections for %.0f s",
            CLIENT_LIMIT_CAUSE,
            self.max_connections - len(self._retired),
            CLIENT_LIMIT_BACKOFF_S,
        )
        return True

    def release(self, connection: Any) -> None:
        connection.qrlogin_released = time.monotonic()
        super().release(connection)  # type: ignore[no-untyped-call]
        self._spares_timer()
        if gevent_patched():
            self._wake()

    def _spares_timer(self) -> None:
        """Start the timer that closes spares, if there are some and it is not running."""
        if self._reaper is None and gevent_patched() and self._spares():
            self._reaper = gevent.spawn_later(SPARE_IDLE_S, self._reap)

    def _spares(self) -> list[Any]:
        """The connected connections waiting in the queue past the most recent few (the
        queue's end is the most recently released). A copy of the queue's list: nothing
        here waits, so no other greenlet changes it meanwhile (gevent's queue has no
        lock to take)."""
        waiting = [c for c in list(self.pool.queue) if c is not None and _connected(c)]
        return waiting[:-CORE_CONNECTIONS]

    def _reap(self) -> None:
        """The timer: close the spares that have waited ``SPARE_IDLE_S``; come back when
        the oldest of those left will have, while some are left."""
        now = time.monotonic()
        for connection in self._spares():
            if now - connection.qrlogin_released >= SPARE_IDLE_S:
                connection.disconnect()
        left = self._spares()
        if not left:
            self._reaper = None
            return
        due = min(c.qrlogin_released for c in left) + SPARE_IDLE_S - now
        self._reaper = gevent.spawn_later(max(due, 0.0), self._reap)

    def _restore(self) -> None:
        retired, self._retired = self._retired, []
        for slot in retired:
            self.pool.put_nowait(slot)


def _connected(connection: Any) -> bool:
    return getattr(connection, "_sock", None) is not None
