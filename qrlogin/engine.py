"""The Redis connection of a process: a real server, or the embedded stand-in.

With ``REDIS_URL`` set, the process keeps one bounded connection pool for
commands (the hub adds one subscriber connection). Without it, an in-process
fakeredis server with Lua is used, which only works inside one process and is
announced loudly at start.
"""

from __future__ import annotations

import functools
import logging
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

from qrlogin.config import Settings, sentinel_addresses
from qrlogin.pool import CLIENT_LIMIT, CLIENT_LIMIT_CAUSE, Parser, Pool
from qrlogin.topology import Cluster, Single, Topology

log = logging.getLogger(__name__)

#: How long a request waits for a free pooled connection before 503 (seconds).
POOL_TIMEOUT_S = 5.0
#: Connect and read timeouts, so a dead Redis gives a quick 503 rather than a hang (seconds).
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
#: The longest one wait on a Redis that accepts connections but does not answer, once a
#: pooled connection is held: a reconnect, and the command's own timeout. (A rate-limited
#: request waits twice: the limiter, finding Redis down, lets it through to its own.) A
#: command that timed out is not tried again (it may have run; and a second wait would
#: double the bound), whereas one whose connection was lost is, once.
UNANSWERED_WITHIN_S = CONNECT_TIMEOUT_S + SOCKET_TIMEOUT_S
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
        "retry": Retry(
            ExponentialBackoff(cap=0.2, base=0.05), 1, (redis.exceptions.ConnectionError,)
        ),
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
        # client reload the slot map and try again, within the same few retries (it tries a
        # timed-out command again too: that is how it finds a master gone).
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
    (CLIENT_LIMIT, CLIENT_LIMIT_CAUSE),
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
