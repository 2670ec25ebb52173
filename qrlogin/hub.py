"""The process's event hub: the waiters on each channel, fanned out from one subscriber
per Redis node (``qrlogin.subscriber``).

Browsers waiting on a QR (an SSE stream or a long poll), a session or a user's notices
each hold a ``Waiter`` (``qrlogin.waiters``), or are a stream parked in the lot. Events
come by sharded pub/sub (SSUBSCRIBE): the hub keeps one subscriber connection per Redis
node that carries channels with waiters here (one for a single Redis; one per master of
a Redis Cluster), subscribed to exactly those channels.

Pub/sub is at-most-once, so it only wakes waiters: after every (re)subscribe each waiter
is checked against the store, which is the truth, and only the waiters whose state
changed meanwhile are woken to re-read. When a subscriber fails (its node died, or
Redis moved the node's slots elsewhere), the hub's supervisor reloads the topology,
places every channel on its node again and restarts the subscribers, backing off while
Redis stays away.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gevent
import gevent.event
import gevent.monkey
import redis

from qrlogin.exceptions import HubError
from qrlogin.metrics import FAILOVERS, REDIS_ERRORS, RESUBSCRIBES, WAITING
from qrlogin.subscriber import Shard
from qrlogin.topology import Topology
from qrlogin.waiters import Listener, Waiter

log = logging.getLogger(__name__)

#: Reconnect back-off: first delay and cap (seconds). One attempt a second per process
#: costs Redis nothing, and a failover is followed within a second of its end.
BACKOFF_FIRST_S = 0.1
BACKOFF_CAP_S = 1.0
#: What finding a channel's node may raise while the cluster changes.
TOPOLOGY_ERRORS = (redis.exceptions.RedisError, redis.exceptions.RedisClusterException)


def gevent_patched() -> bool:
    return bool(gevent.monkey.is_module_patched("socket"))


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
        # one, and a set for each would double what a full garbage collection walks (a
        # set beside every parked stream).
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

    def listening(self, channel: str) -> list[Listener]:
        """The waiters on ``channel``, copied: a parked stream that takes its final event
        leaves at once."""
        found = self._waiters.get(channel)
        if found is None:
            return []
        return list(found) if isinstance(found, set) else [found]

    # What the subscribers call.

    @property
    def topology(self) -> Topology:
        return self._topology

    def versions(self, channels: list[str]) -> list[int | None]:
        """The versions of the states behind ``channels`` (None: gone), in one round trip."""
        return self._versions(channels)

    def answered(self) -> None:
        """A subscriber heard from Redis: the next recovery starts from the first delay."""
        self._delay = BACKOFF_FIRST_S

    def trouble(self) -> None:
        """A subscriber failed, or a channel's node is unknown: the supervisor recovers."""
        self._trouble.set()

    def shutdown(self) -> None:
        """End every wait now (waiters see ``closed``) and stop the subscribers."""
        self._closing = True
        self.ending = self.waiting
        for channel in list(self._waiters):
            for waiter in self.listening(channel):
                waiter._close()
        for shard in self._shards.values():
            shard.nudged.set()  # its greenlet ends

    def _place(self, channel: str) -> None:
        """Put ``channel`` on its node's subscriber (started unless the hub is recovering)."""
        try:
            node = self._topology.node_of(channel)
        except TOPOLOGY_ERRORS:
            node = ""  # no known owner now: the supervisor places it once there is one
            self.trouble()
        shard = self._shards.get(node)
        if shard is None:
            shard = self._shards[node] = Shard(self, node)
        shard.channels.add(channel)
        shard.touch(channel)
        self._placed[channel] = shard
        if node and not shard.running and not self._trouble.is_set():
            shard.start()

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
                    shard.start()

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
                shard = shards[node] = (
                    old if old is not None and not old.retired else Shard(self, node)
                )
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
