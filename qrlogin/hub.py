"""The process's subscribers, fanning state events out to the waiters in it.

Browsers waiting on a QR (an SSE stream or a long poll), a session or a user's notices
each hold a ``Waiter``. Events come by sharded pub/sub (SSUBSCRIBE): the hub keeps one
subscriber connection per Redis node that carries channels with waiters here (one for a
single Redis; one per master of a Redis Cluster), subscribed to exactly those channels,
and only that connection's own greenlet drives it (a redis-py PubSub is not safe to share
between greenlets).

Pub/sub is at-most-once, so it only wakes waiters: after every (re)subscribe each waiter
is checked against the store, which is the truth: the hub reads the versions of all newly
subscribed channels in one pipelined round trip and wakes, to re-read, only the waiters
whose state changed meanwhile. A burst of subscriptions (thousands of browsers arriving,
or all of them after a failover) so costs a few round trips, not one read per waiter.

When a subscriber fails (its node died, or Redis moved the node's slots elsewhere), the
hub's supervisor reloads the topology, places every channel on its node again and
restarts the subscribers, backing off while Redis stays away.
"""

from __future__ import annotations

import logging
import random
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import gevent
import gevent.event
import gevent.monkey
import redis

from qrlogin.exceptions import DeadConnectionError, HubError
from qrlogin.messages import Published, parse
from qrlogin.metrics import FAILOVERS, REDIS_ERRORS, RESUBSCRIBES, WAITING
from qrlogin.topology import Topology

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
#: Reconnect back-off: first delay and cap (seconds). One attempt a second per process
#: costs Redis nothing, and a failover is followed within a second of its end.
BACKOFF_FIRST_S = 0.1
BACKOFF_CAP_S = 1.0
#: Channels whose versions are checked in one round trip after they were subscribed.
CHECK_BATCH = 500
#: Channels no one waits on any more are unsubscribed together: once this many have
#: gathered, or this long (s) after the first of them. Each stream that ends (most end
#: on their QR's final event) would otherwise cost the subscriber a command of its own;
#: an event on a channel left meanwhile finds no waiter and is dropped.
LEAVE_BATCH = 100
LEAVE_AFTER_S = 1.0
#: What finding a channel's node may raise while the cluster changes.
TOPOLOGY_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)
#: What a subscriber that failed tells: Redis went away, or moved its slots.
SUBSCRIBER_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ResponseError,  # MOVED, CLUSTERDOWN on (S)SUBSCRIBE
    OSError,
)


def gevent_patched() -> bool:
    return bool(gevent.monkey.is_module_patched("socket"))


class Listener(Protocol):
    """What the hub delivers a channel's events to: its owner keeps ``version`` at the
    newest state it has."""

    channel: str
    version: int

    def _push(self, event: Published) -> None: ...

    def _wake(self) -> None: ...

    def _close(self) -> None: ...


class Waiter:
    """One client waiting on one channel: the newest event seen, and whether to re-read.

    ``version`` is the newest state version its owner has; the owner keeps it current.
    """

    __slots__ = ("_event", "channel", "closed", "latest", "poked", "resync", "version")

    def __init__(self, channel: str, version: int, event: Any = None) -> None:
        self.channel = channel
        self.version = version
        self.latest: Published | None = None
        self.resync = False
        self.closed = False
        self.poked = False  # its client's socket became readable: perhaps it went away
        # Waiters of one client (a stream of many QRs) may share one event.
        self._event = event if event is not None else gevent.event.Event()

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


class Shard:
    """One subscriber connection, to one Redis node, and the channels placed on it."""

    def __init__(self, node: str) -> None:
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


class Hub:
    """The process's subscribers. Start it after forking (it refuses without gevent)."""

    def __init__(
        self,
        topology: Topology,
        versions: Callable[[list[str]], list[int | None]],
    ) -> None:
        self._topology = topology
        self._versions = versions
        # A channel's waiter, or a set of them when there are more: most channels have
        # one, and a set for each would double what a full collection walks (with 12,000
        # parked streams: 12,000 sets beside the 12,000 streams, 93 % of the tracked
        # objects, and 23 to 28 ms a collection).
        self._waiters: dict[str, Listener | set[Listener]] = {}
        self._shards: dict[str, Shard] = {}
        self._placed: dict[str, Shard] = {}
        self._supervisor: Any = None
        self._trouble: Any = None  # set when a subscriber failed
        self._delay = BACKOFF_FIRST_S  # before the next recovery; reset once Redis answers
        self._closing = False
        self.ending = 0  # waiters when shutdown began

    @property
    def waiting(self) -> int:
        """How many waiters this process holds."""
        return sum(len(w) if isinstance(w, set) else 1 for w in self._waiters.values())

    def start(self) -> None:
        if self._closing or (self._supervisor is not None and not self._supervisor.dead):
            return  # running, or shut down for good (a stopping worker takes no new waits)
        if not gevent_patched():
            raise HubError(
                "qrlogin's event hub needs gevent, and the socket module is not patched: "
                "run under gunicorn with the gevent worker (Procfile, gunicorn.conf.py) "
                "or with `python app.py`"
            )
        self._trouble = gevent.event.Event()
        self._supervisor = gevent.spawn(self._supervise)

    @contextmanager
    def watch(self, channel: str, version: int, event: Any = None) -> Iterator[Waiter]:
        """Wait on a channel (a QR's, a session's, a user's), whose state the caller read
        at ``version``, for the block; ``event`` (a gevent Event) is set on news, when
        the caller waits on several channels at once."""
        waiter = Waiter(channel, version, event)
        self.attach(waiter)
        try:
            yield waiter
        finally:
            self.detach(waiter)

    @property
    def closing(self) -> bool:
        """Whether the hub was shut down (the process is stopping)."""
        return self._closing

    def attach(self, waiter: Listener) -> None:
        """Deliver the events of ``waiter.channel`` to ``waiter`` until ``detach``: a
        ``Waiter``, or a stream parked in the process's lot. Closed at once when the
        hub is shutting down."""
        self.start()
        channel = waiter.channel
        found = self._waiters.get(channel)
        if found is None:
            self._waiters[channel] = waiter
            self._place(channel)
        elif isinstance(found, set):
            found.add(waiter)
        elif found is not waiter:
            self._waiters[channel] = {found, waiter}
        WAITING.inc()
        if self._closing:
            waiter._close()

    def detach(self, waiter: Listener) -> None:
        """Stop delivering to ``waiter``; its channel is unsubscribed once no one waits."""
        channel = waiter.channel
        found = self._waiters.get(channel)
        if isinstance(found, set):
            if waiter in found:
                WAITING.dec()
                found.discard(waiter)
                if len(found) == 1:
                    self._waiters[channel] = found.pop()
            return
        if found is not waiter:
            return
        WAITING.dec()
        del self._waiters[channel]
        shard = self._placed.pop(channel, None)
        if shard is not None:
            shard.channels.discard(channel)
            shard.touch(channel)

    def _listening(self, channel: str) -> list[Listener]:
        """The waiters on ``channel``, copied: a parked stream that takes its final event
        leaves at once."""
        found = self._waiters.get(channel)
        if found is None:
            return []
        return list(found) if isinstance(found, set) else [found]

    def shutdown(self) -> None:
        """End every wait now (waiters see ``closed``) and stop the subscribers."""
        self._closing = True
        self.ending = self.waiting
        for channel in list(self._waiters):
            for waiter in self._listening(channel):
                waiter._close()
        for shard in self._shards.values():
            shard.nudged.set()  # its greenlet ends

    def _place(self, channel: str) -> None:
        """Put ``channel`` on its node's subscriber (started unless the hub is recovering)."""
        try:
            node = self._topology.node_of(channel)
        except TOPOLOGY_ERRORS:
            node = ""  # no known owner now: the supervisor places it once there is one
            self._trouble.set()
        shard = self._shards.get(node)
        if shard is None:
            shard = self._shards[node] = Shard(node)
        shard.channels.add(channel)
        shard.touch(channel)
        self._placed[channel] = shard
        if node and not shard.running and not self._trouble.is_set():
            self._spawn(shard)

    def _spawn(self, shard: Shard) -> None:
        shard.greenlet = gevent.spawn(self._subscribe, shard)

    # The supervisor's greenlet.

    def _supervise(self) -> None:
        while not self._closing:
            self._trouble.wait()
            delay = self._delay
            time.sleep(delay + random.uniform(0, delay / 2))  # noqa: S311 (jitter)
            self._delay = min(delay * 2, BACKOFF_CAP_S)
            try:
                self._topology.refresh()
                if self._place_all():
                    FAILOVERS.inc()
                    log.warning("Redis moved channels to other nodes; resubscribing there")
            except TOPOLOGY_ERRORS as e:
                log.warning("event hub cannot reach Redis (%s); trying again", e)
                REDIS_ERRORS.labels("hub").inc()
                continue
            self._trouble.clear()
            for shard in list(self._shards.values()):
                if shard.channels and not shard.running:
                    RESUBSCRIBES.inc()
                    self._spawn(shard)

    def _place_all(self) -> bool:
        """Place every channel with waiters on the node that holds it now; whether some
        moved from the node they were on."""
        placed: dict[str, Shard] = {}
        shards: dict[str, Shard] = {}
        moved = False
        for channel in self._waiters:
            node = self._topology.node_of(channel)
            was = self._placed.get(channel)
            moved = moved or (was is not None and was.node not in ("", node))
            shard = shards.get(node)
            if shard is None:
                old = self._shards.get(node)
                shard = shards[node] = old if old is not None and not old.retired else Shard(node)
                shard.channels = set()
                shard.whole = True
                shard.nudged.set()
            shard.channels.add(channel)
            placed[channel] = shard
        for node, old in self._shards.items():
            if node not in shards:
                old.retire()
        self._shards, self._placed = shards, placed
        return moved

    # A subscriber's greenlet from here on.

    def _subscribe(self, shard: Shard) -> None:
        try:
            self._serve(shard)
        except (*SUBSCRIBER_ERRORS, DeadConnectionError) as e:
            if not shard.retired:
                # Waiters keep waiting: once resubscribed, those whose state changed wake.
                log.warning("event hub lost Redis at %s (%s); reconnecting", shard.node, e)
                REDIS_ERRORS.labels("hub").inc()
                self._trouble.set()

    def _serve(self, shard: Shard) -> None:
        pubsub = self._topology.subscriber(shard.node).pubsub()  # type: ignore[no-untyped-call]
        shard.requested, shard.confirmed, shard.dropping = set(), set(), {}
        shard.whole = True
        last_traffic = last_ping = time.monotonic()
        try:
            while not self._closing and not shard.retired:
                shard.nudged.clear()  # what changes from here on wakes the rest below
                self._sync(shard, pubsub)
                if not shard.requested:
                    last_traffic = time.monotonic()
                    shard.nudged.wait(REST_S)
                    continue
                message = pubsub.get_message(timeout=0)
                now = time.monotonic()
                if message is None and shard.confirmed:
                    self._check_confirmed(shard)  # the socket is drained: check the batch
                    continue
                if message is None:
                    idle = now - last_traffic
                    if idle > DEAD_AFTER_S:
                        raise DeadConnectionError(f"no answer from Redis for {DEAD_AFTER_S}s")
                    if idle > HEALTH_CHECK_S and now - last_ping > HEALTH_CHECK_S:
                        pubsub.ping(PING_MESSAGE)  # its answer counts as traffic
                        last_ping = now
                    self._rest(shard, pubsub, now)
                    continue
                last_traffic = now
                self._delay = BACKOFF_FIRST_S  # this node answers
                self._dispatch(shard, message)
        finally:
            shard.requested, shard.confirmed = set(), set()
            try:
                pubsub.close()
            except (redis.exceptions.RedisError, OSError):
                log.debug("closing a broken subscriber connection failed", exc_info=True)

    def _rest(self, shard: Shard, pubsub: Any, now: float) -> None:
        """Wait until the subscriber's socket has something to read, the shard changes,
        or its clocks are due: the channels left go, or the health check. An idle
        subscriber so wakes about once a second, not at every poll interval."""
        timeout = max(0.0, min(REST_S, shard.leave_at - now) if shard.leaving else REST_S)
        if not pubsub.subscribed:
            # redis-py reads nothing until it counts a subscription: waiting on a socket
            # with bytes in it would not wait at all.
            shard.nudged.wait(min(timeout, POLL_S))
            return
        sock = getattr(pubsub.connection, "_sock", None)
        if not isinstance(sock, socket.socket) or hasattr(sock, "pending"):
            pubsub.connection.can_read(timeout=min(timeout, POLL_S))
            return
        watcher = gevent.get_hub().loop.io(sock.fileno(), 1)  # 1: readable
        watcher.start(shard.nudged.set)
        try:
            shard.nudged.wait(timeout)
        finally:
            watcher.stop()
            watcher.close()

    def _sync(self, shard: Shard, pubsub: Any) -> None:
        if shard.leaving and (
            len(shard.leaving) >= LEAVE_BATCH or time.monotonic() >= shard.leave_at
        ):
            leaving, shard.leaving = shard.leaving, set()
            self._unsubscribe(shard, pubsub, [c for c in leaving if c not in shard.channels])
        if not shard.changed:
            return
        # Taken before subscribing, which yields to greenlets that add more (they mark
        # the shard changed again). Only what was touched is compared: a worker holding
        # 12,000 channels would otherwise copy and compare them all for every browser
        # that arrives or leaves.
        if shard.whole:
            shard.whole, shard.touched, shard.leaving = False, set(), set()
            wanted = set(shard.channels)
            add = sorted(wanted - shard.requested)
            drop = list(shard.requested - wanted)
        else:
            touched, shard.touched = shard.touched, set()
            add = sorted(c for c in touched if c in shard.channels and c not in shard.requested)
            left = [c for c in touched if c not in shard.channels and c in shard.requested]
            if left and not shard.leaving:
                shard.leave_at = time.monotonic() + LEAVE_AFTER_S
            shard.leaving.update(left)
            drop = []
        for batch in self._topology.batches(add):
            pubsub.ssubscribe(*batch)
        shard.requested.update(add)
        self._unsubscribe(shard, pubsub, drop)

    def _unsubscribe(self, shard: Shard, pubsub: Any, channels: list[str]) -> None:
        for batch in self._topology.batches(sorted(channels)):
            pubsub.sunsubscribe(*batch)
        for channel in channels:
            shard.dropping[channel] = shard.dropping.get(channel, 0) + 1
        shard.requested.difference_update(channels)

    def _dispatch(self, shard: Shard, message: dict[str, Any]) -> None:
        kind, channel = message.get("type"), message.get("channel")
        if not isinstance(channel, str):
            return  # e.g. the answer to a health-check PING
        if kind == "ssubscribe":
            shard.confirmed.add(channel)
            if len(shard.confirmed) >= CHECK_BATCH:
                self._check_confirmed(shard)
        elif kind == "smessage":
            event = parse(message.get("data"))
            for waiter in self._listening(channel):
                if event is None:
                    waiter._wake()
                else:
                    waiter._push(event)
        elif kind == "sunsubscribe":
            asked = shard.dropping.get(channel, 0)
            if asked > 1:
                shard.dropping[channel] = asked - 1
            elif asked == 1:
                del shard.dropping[channel]
            elif channel in shard.requested:
                # Redis dropped a channel we did not give up: its slot moved elsewhere.
                raise redis.exceptions.ConnectionError(f"Redis moved {channel} to another node")

    def _check_confirmed(self, shard: Shard) -> None:
        """Wake the waiters whose state changed before their subscription was in place."""
        channels = [c for c in shard.confirmed if c in self._waiters]
        shard.confirmed = set()
        for channel, version in zip(channels, self._versions(channels), strict=True):
            for waiter in self._listening(channel):
                if version is None or version > waiter.version:
                    waiter._wake()
