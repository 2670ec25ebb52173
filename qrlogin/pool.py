"""The command connection pool of a process, and the reply parser its connections use."""

from __future__ import annotations

import logging
import select
import time
from queue import Empty
from typing import Any

import gevent
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


class Pool(redis.BlockingConnectionPool):
    """The command pool: bounded (QRLOGIN_REDIS_MAX_CONNECTIONS), and a request waits for
    a free connection rather than open one past the bound. When Redis refuses a new
    connection for its client limit (a small managed plan), the pool keeps to the
    connections it has for a while: the request that met the refusal, and those after
    it, wait for one of them, instead of each opening a connection to be refused too.
    Connections past the first ``CORE_CONNECTIONS`` close once unused for
    ``SPARE_IDLE_S``: a burst's extra connections go back to Redis. A timer closes them
    (under gevent, as the service runs), since a process whose burst is over may have no
    request to look for them."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)  # type: ignore[no-untyped-call]
        self._retired: list[Any] = []  # slots set aside, each a place in the queue
        self._retired_until = 0.0
        self._reaper: Any = None  # the timer's greenlet, while there are spares

    def get_connection(self, *args: Any, **options: Any) -> Any:
        if self._retired and time.monotonic() >= self._retired_until:
            self._restore()
        try:
            return super().get_connection(*args, **options)  # type: ignore[no-untyped-call]
        except redis.exceptions.ConnectionError as error:
            if CLIENT_LIMIT not in str(error) or not self._retire():
                raise
            return super().get_connection(*args, **options)  # type: ignore[no-untyped-call]

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
