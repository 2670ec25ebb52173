"""One Redis subscriber per process, fanning QR events out to the waiters in it.

Browsers waiting on a QR (an SSE stream or a long poll) each hold a ``Waiter``.
The hub keeps a single pub/sub connection subscribed to exactly the channels
that have waiters here, and only its own greenlet drives that connection
(a redis-py PubSub is not safe to share between greenlets). Pub/sub is
at-most-once, so it only wakes waiters: after every (re)subscribe each waiter
is checked against the store, which is the truth: the hub reads the versions of
all newly subscribed QRs in one pipelined round trip and wakes, to re-read, only
the waiters whose QR changed meanwhile. A burst of subscriptions (thousands of
browsers arriving, or all of them after Redis comes back) so costs a few round
trips, not one read per waiter.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import redis

from qrlogin.exceptions import DeadConnectionError, HubError
from qrlogin.messages import Published, parse
from qrlogin.metrics import REDIS_ERRORS, WAITING

log = logging.getLogger(__name__)

#: How long the hub's greenlet blocks on the socket before looking at new waiters (seconds).
POLL_S = 0.02
#: A PING goes to Redis when the subscriber connection was idle this long (seconds).
HEALTH_CHECK_S = 10
PING_MESSAGE = "qrlogin-hub"
#: With no traffic at all (not even the PING's answer) for this long, the connection is dead.
DEAD_AFTER_S = 25.0
#: Reconnect back-off: first delay and cap (seconds).
BACKOFF_FIRST_S = 0.1
BACKOFF_CAP_S = 5.0
#: Channels per SUBSCRIBE/UNSUBSCRIBE command.
BATCH = 500


def gevent_patched() -> bool:
    import gevent.monkey

    return bool(gevent.monkey.is_module_patched("socket"))


class Waiter:
    """One client waiting on one channel: the newest event seen, and whether to re-read.

    ``version`` is the newest state version its owner has; the owner keeps it current.
    """

    __slots__ = ("_event", "channel", "closed", "latest", "poked", "resync", "version")

    def __init__(self, channel: str, version: int) -> None:
        import gevent.event

        self.channel = channel
        self.version = version
        self.latest: Published | None = None
        self.resync = False
        self.closed = False
        self.poked = False  # its client's socket became readable: perhaps it went away
        self._event = gevent.event.Event()

    def wait(self, timeout: float | None) -> bool:
        """Block until something happens or ``timeout`` passes; True when something did."""
        fired = bool(self._event.wait(timeout))
        self._event.clear()
        return fired

    def take(self) -> tuple[Published | None, bool]:
        """The newest event and the re-read flag, both reset."""
        latest, resync = self.latest, self.resync
        self.latest, self.resync = None, False
        return latest, resync

    def _push(self, event: Published) -> None:
        if self.latest is None or event.snapshot.version > self.latest.snapshot.version:
            self.latest = event
        self._event.set()

    def poke(self) -> None:
        """Wake the owner to look at its client's socket (from an io watcher)."""
        self.poked = True
        self._event.set()

    def _wake(self) -> None:
        self.resync = True
        self._event.set()

    def _close(self) -> None:
        self.closed = True
        self._event.set()


class Hub:
    """The process's subscriber. Start it after forking (it refuses without gevent)."""

    def __init__(
        self,
        connect: Callable[[], redis.Redis],
        versions: Callable[[list[str]], list[int | None]],
    ) -> None:
        self._connect = connect
        self._versions = versions
        self._waiters: dict[str, set[Waiter]] = {}
        self._requested: set[str] = set()  # subscribed (or asked) on the current connection
        self._confirmed: set[str] = set()  # subscriptions confirmed, versions not yet checked
        self._greenlet: Any = None
        self._closing = False
        self.reconnects = 0

    @property
    def waiting(self) -> int:
        """How many waiters this process holds."""
        return sum(len(w) for w in self._waiters.values())

    def start(self) -> None:
        if self._closing or (self._greenlet is not None and not self._greenlet.dead):
            return  # running, or shut down for good (a stopping worker takes no new waits)
        if not gevent_patched():
            raise HubError(
                "qrlogin's event hub needs gevent, and the socket module is not patched: "
                "run under gunicorn with the gevent worker (Procfile, gunicorn.conf.py) "
                "or with `python app.py`"
            )
        import gevent

        self._greenlet = gevent.spawn(self._run)

    @contextmanager
    def watch(self, channel: str, version: int) -> Iterator[Waiter]:
        """Wait on a channel (a QR's, a session's, a user's), whose state the caller read
        at ``version``, for the block."""
        self.start()
        waiter = Waiter(channel, version)
        if self._closing:
            waiter._close()
        self._waiters.setdefault(channel, set()).add(waiter)
        WAITING.inc()
        try:
            yield waiter
        finally:
            WAITING.dec()
            waiters = self._waiters.get(channel)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del self._waiters[channel]

    def shutdown(self) -> None:
        """End every wait now (waiters see ``closed``) and stop the subscriber."""
        self._closing = True
        for waiters in list(self._waiters.values()):
            for waiter in list(waiters):
                waiter._close()

    # The hub's own greenlet from here on.

    def _run(self) -> None:
        delay = BACKOFF_FIRST_S
        while not self._closing:
            try:
                self._serve()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
                # Waiters keep waiting: once resubscribed, those whose QR changed are woken.
                log.warning("event hub lost Redis (%s); reconnecting in %.1fs", e, delay)
                REDIS_ERRORS.labels("hub").inc()
                time.sleep(delay + random.uniform(0, delay / 2))  # noqa: S311 (jitter)
                delay = min(delay * 2, BACKOFF_CAP_S)
                self.reconnects += 1
            else:
                delay = BACKOFF_FIRST_S

    def _serve(self) -> None:
        pubsub = self._connect().pubsub()  # type: ignore[no-untyped-call]
        self._requested, self._confirmed = set(), set()
        last_traffic = last_ping = time.monotonic()
        try:
            while not self._closing:
                self._sync(pubsub)
                if not self._requested:
                    last_traffic = time.monotonic()
                    time.sleep(POLL_S)
                    continue
                message = pubsub.get_message(timeout=0 if self._confirmed else POLL_S)
                now = time.monotonic()
                if message is None and self._confirmed:
                    self._check_confirmed()  # the socket is drained: check the batch
                    continue
                if message is None:
                    idle = now - last_traffic
                    if idle > DEAD_AFTER_S:
                        raise DeadConnectionError(f"no answer from Redis for {DEAD_AFTER_S}s")
                    if idle > HEALTH_CHECK_S and now - last_ping > HEALTH_CHECK_S:
                        pubsub.ping(PING_MESSAGE)  # its answer counts as traffic
                        last_ping = now
                    continue
                last_traffic = now
                self._dispatch(message)
        finally:
            self._requested, self._confirmed = set(), set()
            try:
                pubsub.close()
            except (redis.exceptions.RedisError, OSError):
                log.debug("closing a broken subscriber connection failed", exc_info=True)

    def _sync(self, pubsub: Any) -> None:
        wanted = set(self._waiters)
        add = sorted(wanted - self._requested)
        drop = sorted(self._requested - wanted)
        for i in range(0, len(add), BATCH):
            pubsub.subscribe(*add[i : i + BATCH])
        for i in range(0, len(drop), BATCH):
            pubsub.unsubscribe(*drop[i : i + BATCH])
        self._requested = wanted

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message.get("type"), message.get("channel")
        if not isinstance(channel, str):
            return  # e.g. the answer to a health-check PING
        waiters = self._waiters.get(channel, ())
        if kind == "subscribe":
            self._confirmed.add(channel)
            if len(self._confirmed) >= BATCH:
                self._check_confirmed()
        elif kind == "message":
            event = parse(message.get("data"))
            for waiter in waiters:
                if event is None:
                    waiter._wake()
                else:
                    waiter._push(event)

    def _check_confirmed(self) -> None:
        """Wake the waiters whose QR changed before their subscription was in place."""
        channels = [c for c in self._confirmed if c in self._waiters]
        self._confirmed = set()
        for channel, version in zip(channels, self._versions(channels), strict=True):
            for waiter in self._waiters.get(channel, ()):
                if version is None or version > waiter.version:
                    waiter._wake()
