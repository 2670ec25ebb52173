"""A subscriber: one connection to one Redis node, subscribed (SSUBSCRIBE) to the
channels with waiters in this process that the node holds, and its greenlet.

The greenlet keeps the connection's subscriptions in step with the channels (joining
in gathered batches, leaving in bigger ones), reads the events and hands each to the
hub's waiters on its channel, checks the versions of newly subscribed channels in one
round trip (pub/sub is at-most-once: a state changed before the subscription was in
place wakes its waiters to re-read), and pings an idle connection. It ends when the
connection fails, and tells the hub, which restarts it.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event
import redis

from qrlogin.exceptions import DeadConnectionError
from qrlogin.messages import parse
from qrlogin.metrics import REDIS_ERRORS

if TYPE_CHECKING:
    from qrlogin.hub import Hub

log = logging.getLogger(__name__)

#: The longest a subscriber's greenlet rests before looking at its clocks (health check,
#: channels to leave): it wakes at once for a message, or when its channels change.
REST_S = 1.0
#: Waiters that arrive or leave within this long of one another are (un)subscribed
#: together: the first wakes the subscriber this long after it (seconds).
GATHER_S = 0.02
#: Where the subscriber's socket cannot be watched (the embedded stand-in, TLS, which
#: keeps bytes the system cannot see), it is looked at this often instead (seconds).
POLL_S = 0.02
#: A PING goes to Redis when the subscriber connection was idle this long (seconds).
HEALTH_CHECK_S = 10
PING_MESSAGE = "qrlogin-hub"
#: With no traffic at all (not even the PING's answer) for this long, the connection is dead.
DEAD_AFTER_S = 25.0
#: Channels whose versions are checked in one round trip after they were subscribed.
CHECK_BATCH = 500
#: Channels no one waits on any more are unsubscribed together: once this many have
#: gathered, or this long (s) after the first of them. Each stream that ends (most end
#: on their QR's final event) would otherwise cost the subscriber a command of its own;
#: an event on a channel left meanwhile finds no waiter and is dropped.
LEAVE_BATCH = 100
LEAVE_AFTER_S = 1.0
#: What a subscriber that failed tells: Redis went away, or moved its slots.
SUBSCRIBER_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ResponseError,  # MOVED, CLUSTERDOWN on (S)SUBSCRIBE
    OSError,
)


class Shard:
    """One subscriber connection, to one Redis node, the channels placed on it, and the
    greenlet that drives it (the only one that touches its connection)."""

    def __init__(self, hub: Hub, node: str) -> None:
        self.hub = hub
        self.node = node
        self.channels: set[str] = set()  # with waiters in this process
        self.requested: set[str] = set()  # subscribed (or asked) on the current connection
        self.confirmed: set[str] = set()  # subscriptions confirmed, versions not yet checked
        self.dropping: dict[str, int] = {}  # unsubscribes sent, not yet answered
        # Channels without waiters, still subscribed until the next ``LEAVE_BATCH``.
        self.leaving: set[str] = set()
        self.leave_at = 0.0  # when they go, at the latest (monotonic)
        # Channels added or removed since the last look; everything when ``whole``.
        self.touched: set[str] = set()
        self.whole = True
        self.greenlet: Any = None
        self.retired = False  # the node no longer holds these channels
        # Set to wake the subscriber's greenlet from its rest: a message, or a change.
        self.nudged = gevent.event.Event()
        self._gather = gevent.get_hub().loop.timer(GATHER_S)

    def touch(self, channel: str) -> None:
        """``channel`` was added to or removed from ``channels``: the subscriber looks
        ``GATHER_S`` later, at every change until then."""
        self.touched.add(channel)
        if not self._gather.active:
            self._gather.start(self.nudged.set)

    def retire(self) -> None:
        """The node no longer holds these channels: the greenlet ends at its next look."""
        self.retired = True
        self.channels = set()
        self.nudged.set()

    @property
    def changed(self) -> bool:
        """Whether the channels may differ from what the connection asked for."""
        return self.whole or bool(self.touched)

    @property
    def running(self) -> bool:
        return self.greenlet is not None and not self.greenlet.dead

    def start(self) -> None:
        self.greenlet = gevent.spawn(self.run)

    def run(self) -> None:
        try:
            self._serve()
        except (*SUBSCRIBER_ERRORS, DeadConnectionError) as e:
            if not self.retired:
                # Waiters keep waiting: once resubscribed, those whose state changed wake.
                log.warning("event hub lost Redis at %s (%s); reconnecting", self.node, e)
                REDIS_ERRORS.labels("hub").inc()
                self.hub.trouble()

    def _serve(self) -> None:
        pubsub = self.hub.topology.subscriber(self.node).pubsub()  # type: ignore[no-untyped-call]
        self.requested, self.confirmed, self.dropping = set(), set(), {}
        self.whole = True
        last_traffic = last_ping = time.monotonic()
        try:
            while not self.hub.closing and not self.retired:
                self.nudged.clear()  # what changes from here on wakes the rest below
                self._sync(pubsub)
                if not self.requested:
                    last_traffic = time.monotonic()
                    self.nudged.wait(REST_S)
                    continue
                message = pubsub.get_message(timeout=0)
                now = time.monotonic()
                if message is None and self.confirmed:
                    self._check_confirmed()  # the socket is drained: check the batch
                    continue
                if message is None:
                    idle = now - last_traffic
                    if idle > DEAD_AFTER_S:
                        raise DeadConnectionError(f"no answer from Redis for {DEAD_AFTER_S}s")
                    if idle > HEALTH_CHECK_S and now - last_ping > HEALTH_CHECK_S:
                        pubsub.ping(PING_MESSAGE)  # its answer counts as traffic
                        last_ping = now
                    self._rest(pubsub, now)
                    continue
                last_traffic = now
                self.hub.answered()  # this node answers
                self._dispatch(message)
        finally:
            self.requested, self.confirmed = set(), set()
            try:
                pubsub.close()
            except (redis.exceptions.RedisError, OSError):
                log.debug("closing a broken subscriber connection failed", exc_info=True)

    def _rest(self, pubsub: Any, now: float) -> None:
        """Wait until the subscriber's socket has something to read, the shard changes,
        or its clocks are due: the channels left go, or the health check. An idle
        subscriber so wakes about once a second, not at every poll interval."""
        timeout = max(0.0, min(REST_S, self.leave_at - now) if self.leaving else REST_S)
        if not pubsub.subscribed:
            # redis-py reads nothing until it counts a subscription: waiting on a socket
            # with bytes in it would not wait at all.
            self.nudged.wait(min(timeout, POLL_S))
            return
        sock = getattr(pubsub.connection, "_sock", None)
        if not isinstance(sock, socket.socket) or hasattr(sock, "pending"):
            pubsub.connection.can_read(timeout=min(timeout, POLL_S))
            return
        watcher = gevent.get_hub().loop.io(sock.fileno(), 1)  # 1: readable
        watcher.start(self.nudged.set)
        try:
            self.nudged.wait(timeout)
        finally:
            watcher.stop()
            watcher.close()

    def _sync(self, pubsub: Any) -> None:
        if self.leaving and (len(self.leaving) >= LEAVE_BATCH or time.monotonic() >= self.leave_at):
            leaving, self.leaving = self.leaving, set()
            self._unsubscribe(pubsub, [c for c in leaving if c not in self.channels])
        if not self.changed:
            return
        # Taken before subscribing, which yields to greenlets that add more (they mark
        # the shard changed again). Only what was touched is compared: a worker holding
        # thousands of channels would otherwise copy and compare them all for every
        # browser that arrives or leaves.
        if self.whole:
            self.whole, self.touched, self.leaving = False, set(), set()
            wanted = set(self.channels)
            add = sorted(wanted - self.requested)
            drop = list(self.requested - wanted)
        else:
            touched, self.touched = self.touched, set()
            add = sorted(c for c in touched if c in self.channels and c not in self.requested)
            left = [c for c in touched if c not in self.channels and c in self.requested]
            if left and not self.leaving:
                self.leave_at = time.monotonic() + LEAVE_AFTER_S
            self.leaving.update(left)
            drop = []
        for batch in self.hub.topology.batches(add):
            pubsub.ssubscribe(*batch)
        self.requested.update(add)
        self._unsubscribe(pubsub, drop)

    def _unsubscribe(self, pubsub: Any, channels: list[str]) -> None:
        for batch in self.hub.topology.batches(sorted(channels)):
            pubsub.sunsubscribe(*batch)
        for channel in channels:
            self.dropping[channel] = self.dropping.get(channel, 0) + 1
        self.requested.difference_update(channels)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind, channel = message.get("type"), message.get("channel")
        if not isinstance(channel, str):
            return  # e.g. the answer to a health-check PING
        if kind == "ssubscribe":
            self.confirmed.add(channel)
            if len(self.confirmed) >= CHECK_BATCH:
                self._check_confirmed()
        elif kind == "smessage":
            event = parse(message.get("data"))
            for waiter in self.hub.listening(channel):
                if event is None:
                    waiter._wake()
                else:
                    waiter._push(event)
        elif kind == "sunsubscribe":
            asked = self.dropping.get(channel, 0)
            if asked > 1:
                self.dropping[channel] = asked - 1
            elif asked == 1:
                del self.dropping[channel]
            elif channel in self.requested:
                # Redis dropped a channel we did not give up: its slot moved elsewhere.
                raise redis.exceptions.ConnectionError(f"Redis moved {channel} to another node")

    def _check_confirmed(self) -> None:
        """Wake the waiters whose state changed before their subscription was in place."""
        channels = [c for c in self.confirmed if self.hub.listening(c)]
        self.confirmed = set()
        for channel, version in zip(channels, self.hub.versions(channels), strict=True):
            for waiter in self.hub.listening(channel):
                if version is None or version > waiter.version:
                    waiter._wake()
