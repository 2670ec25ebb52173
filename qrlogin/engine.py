"""The Redis connection of a process: a real server, or the embedded stand-in.

With ``REDIS_URL`` set, the process keeps one bounded connection pool for
commands (the hub adds one subscriber connection). Without it, an in-process
fakeredis server with Lua is used, which only works inside one process and is
announced loudly at start.
"""

from __future__ import annotations

import functools
import logging
import select
import time
from queue import Empty
from typing import Any
from urllib.parse import urlsplit

import gevent
import gevent.monkey
import gevent.socket
import redis
from redis._parsers import _HiredisParser
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from qrlogin.config import Settings, sentinel_addresses
from qrlogin.hub import gevent_patched
from qrlogin.topology import Cluster, Single, Topology

log = logging.getLogger(__name__)

#: How long a request waits for a free pooled connection before 503 (seconds).
POOL_TIMEOUT_S = 5.0
#: Connect and read timeouts, so a dead Redis gives a quick 503 rather than a hang (seconds).
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
#: Idle connections are pinged before reuse after this long (seconds).
HEALTH_CHECK_INTERVAL_S = 10

#: Errors that mean "Redis cannot serve this right now" (503), not a bug (500): it is
#: unreachable, a read-only replica, or full (maxmemory with noeviction).
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
)

EMBEDDED_WARNING = (
    "\n" + "!" * 78 + "\n"
    "!! REDIS_URL is not set: using the EMBEDDED single-process Redis stand-in.\n"
    "!! State lives in this process only and is lost when it stops; it cannot be\n"
    "!! shared between workers or instances. NOT FOR PRODUCTION: set REDIS_URL.\n" + "!" * 78
)


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
    poll: 13.7 us a check here, against 0.9 us for the system's. So the system's poll
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


#: How Redis words a refused connection when it serves as many clients as it may.
CLIENT_LIMIT = "max number of clients reached"
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
            dict(_CAUSES)[CLIENT_LIMIT],
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


def connect(settings: Settings) -> redis.Redis:
    """Return the command client for this process."""
    if settings.redis_url is None:
        return _embedded()
    # The most command connections one process opens, whatever the burst
    # (QRLOGIN_REDIS_MAX_CONNECTIONS). Commands take well under a millisecond, so a burst
    # waits briefly for a free connection rather than opening more.
    options = {
        **tls_options(settings),
        "max_connections": settings.redis_max_connections,
        "timeout": POOL_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_timeout": SOCKET_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1),
        "client_name": "qrlogin",
        "decode_responses": True,
        "parser_class": Parser,
    }
    if settings.redis_mode == "sentinel":
        # The master the sentinels name; a failover makes the pool reconnect to the new
        # one. (This pool does not block when full: past 20 connections a request gets 503.)
        del options["timeout"]
        master: redis.Redis = _sentinel(settings).master_for(  # type: ignore[no-untyped-call]
            settings.sentinel_master, **options
        )
        return master
    if settings.clustered:
        # One bounded, blocking pool per master; a failover or a slot move makes the
        # client reload the slot map and try again, within the same few retries.
        return redis.RedisCluster.from_url(  # type: ignore[return-value]  # same commands
            settings.redis_url, connection_pool_class=Pool, **options
        )
    pool = Pool.from_url(settings.redis_url, **options)
    return redis.Redis(connection_pool=pool)


def script_source(settings: Settings, source: str) -> str:
    """The Lua script as this engine runs it: the embedded stand-in's Lua knows no shebang
    line (and has no maxmemory for its flags to matter), so it gets the script without."""
    if settings.redis_url is None and source.startswith("#!"):
        return source.split("\n", 1)[1]
    return source


def topology(settings: Settings, client: redis.Redis) -> Topology:
    """Where the hub's subscriber connections go (see topology.py)."""
    url = settings.redis_url
    if url is None:
        return Single(_embedded)
    # No retries inside redis-py: the hub reconnects and resubscribes itself.
    options: dict[str, object] = {
        **tls_options(settings),
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "socket_keepalive": True,
        "retry": Retry(NoBackoff(), 0),
        "client_name": "qrlogin-hub",
        "parser_class": Parser,
        "decode_responses": True,
    }
    if settings.clustered:
        return Cluster(client, url, options)  # type: ignore[arg-type]  # a RedisCluster
    if settings.redis_mode == "sentinel":
        # The command client's own Sentinel (one per process), asked again at each reconnect.
        sentinel: Sentinel = client.connection_pool.sentinel_manager  # type: ignore[attr-defined]
        name = settings.sentinel_master
        return Single(lambda: sentinel.master_for(name, **options))  # type: ignore[no-untyped-call]
    return Single(lambda: redis.Redis.from_url(url, **options))


def tls_options(settings: Settings) -> dict[str, object]:
    """How connections verify Redis's certificate, for a ``rediss://`` URL (every
    connection: the command pool, the hub's subscribers, the limiter's, the sentinels and
    the nodes of a cluster); nothing for a plain one. In sentinel mode ``ssl`` says to
    speak TLS, as the scheme does elsewhere."""
    if not (settings.redis_url or "").startswith("rediss://"):
        return {}
    options: dict[str, object] = {"ssl_cert_reqs": settings.redis_tls_verify}
    if settings.redis_ca_file:
        options["ssl_ca_certs"] = settings.redis_ca_file
    if settings.redis_mode == "sentinel":
        options["ssl"] = True
    return options


def _sentinel(settings: Settings) -> Sentinel:
    password = urlsplit(settings.redis_url or "").password
    tls = tls_options(settings)
    return Sentinel(  # type: ignore[no-untyped-call]
        sentinel_addresses(settings.redis_url or ""),
        sentinel_kwargs={
            **tls,
            "socket_timeout": SOCKET_TIMEOUT_S,
            "socket_connect_timeout": CONNECT_TIMEOUT_S,
        },
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        password=password,  # the master's (the sentinels are asked without one)
        **tls,
    )


#: What a Redis error's text says of its cause, and the setting that changes it.
_CAUSES = (
    (
        "CERTIFICATE_VERIFY_FAILED",
        "Redis's TLS certificate did not verify: set QRLOGIN_REDIS_CA_FILE to the CA that "
        "signed it, or QRLOGIN_REDIS_TLS_VERIFY=none for a self-signed one without its CA "
        "(Heroku Redis)",
    ),
    (
        "WRONG_VERSION_NUMBER",
        "Redis does not speak TLS on that port: REDIS_URL says rediss://; use redis://",
    ),
    (
        "maxmemory",
        "Redis is full and refuses writes (maxmemory reached, with noeviction): raise its "
        "maxmemory or the plan; the service keeps its keys only for a QR's life plus 10 "
        "minutes",
    ),
    (
        CLIENT_LIMIT,
        f"Redis refused a connection ({CLIENT_LIMIT}): lower QRLOGIN_REDIS_MAX_CONNECTIONS "
        "or WEB_CONCURRENCY, or raise the plan's client limit",
    ),
)


def explain(error: BaseException) -> str | None:
    """What a Redis failure means for the operator, naming the setting to change; None
    when its own words say enough (a refused connection, a timeout)."""
    text = f"{error} {error.__cause__ or ''} {error.__context__ or ''}"
    return next((cause for mark, cause in _CAUSES if mark in text), None)


def cause_of(error: BaseException) -> str:
    """A Redis failure for a log line: what it means when that has a fix, else its own
    words."""
    return explain(error) or f"{type(error).__name__}: {error}"


@functools.cache
def _embedded() -> redis.Redis:
    """One embedded server per process, shared by every app the process creates."""
    import fakeredis

    log.warning(EMBEDDED_WARNING)
    client: redis.Redis = fakeredis.FakeRedis(server=fakeredis.FakeServer(), decode_responses=True)
    return client
