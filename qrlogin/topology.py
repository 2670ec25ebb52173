"""Where each pub/sub channel lives, for the hub: on the one Redis, or on the master that
owns the channel's slot in a Redis Cluster (sharded pub/sub).

The hub keeps one subscriber connection per node that carries channels with waiters in
this process; a topology names those nodes, connects to them, and reloads the cluster's
slot map when the hub finds that it changed (a failover, a slot move).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import redis
import redis.crc

#: Channels per SSUBSCRIBE/SUNSUBSCRIBE command.
BATCH = 500


def _chunks(channels: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(channels), BATCH):
        yield channels[i : i + BATCH]


class Topology(Protocol):
    def node_of(self, channel: str) -> str:
        """The name of the node whose subscriber carries ``channel``."""
        ...

    def subscriber(self, node: str) -> redis.Redis:
        """A client for ``node``'s subscriber connection (no retries: the hub retries)."""
        ...

    def refresh(self) -> None:
        """Reload where the channels live (after a failover or a slot move)."""
        ...

    def batches(self, channels: list[str]) -> Iterator[list[str]]:
        """``channels`` in groups that one (un)subscribe command may carry."""
        ...


class Single:
    """One Redis (or anything that looks like one): every channel on the same node."""

    NODE = "redis"

    def __init__(self, connect: Callable[[], redis.Redis]) -> None:
        self._connect = connect

    def node_of(self, channel: str) -> str:
        return self.NODE

    def subscriber(self, node: str) -> redis.Redis:
        return self._connect()

    def refresh(self) -> None:
        return None

    def batches(self, channels: list[str]) -> Iterator[list[str]]:
        return _chunks(channels)


class Cluster:
    """A Redis Cluster: a channel lives on the master that owns its slot. The slot map is
    the command client's own, so a failover it has seen is seen here too."""

    def __init__(self, client: redis.RedisCluster, url: str, options: dict[str, object]) -> None:
        self._client = client
        self._url = urlsplit(url)
        self._options = options

    def node_of(self, channel: str) -> str:
        slot = redis.crc.key_slot(channel.encode())
        name: str = self._client.nodes_manager.get_node_from_slot(slot).name
        return name

    def subscriber(self, node: str) -> redis.Redis:
        # The node's address in the URL the service was given (its password and TLS too).
        userinfo = self._url.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@{node}" if userinfo else node
        url = urlunsplit(self._url._replace(netloc=netloc, path=""))
        return redis.Redis.from_url(url, **self._options)

    def refresh(self) -> None:
        self._client.nodes_manager.initialize()

    def batches(self, channels: list[str]) -> Iterator[list[str]]:
        # A cluster takes the channels of one command only from one slot.
        by_slot: dict[int, list[str]] = {}
        for channel in channels:
            by_slot.setdefault(redis.crc.key_slot(channel.encode()), []).append(channel)
        for group in by_slot.values():
            yield from _chunks(group)
