"""The hub and its subscriber, in this process, against the tests' Redis."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import gevent
import pytest
import redis

from qrlogin import subscriber
from qrlogin.hub import Hub
from qrlogin.pool import Parser
from qrlogin.topology import Single
from tests.ingevent.conftest import until
from tests.live import PROMPT_S, margin


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    found = redis.Redis.from_url(redis_url, decode_responses=True)
    found.flushdb()
    return found


@pytest.fixture
def versions() -> dict[str, int | None]:
    """What the hub's check after a subscription reads: each channel's version (1 unless
    set here; None: the state is gone)."""
    return {}


@pytest.fixture
def hub(redis_url: str, versions: dict[str, int | None]) -> Iterator[Hub]:
    def subscriber_client() -> redis.Redis:
        return redis.Redis.from_url(redis_url, parser_class=Parser, decode_responses=True)

    found = Hub(Single(subscriber_client), lambda channels: [versions.get(c, 1) for c in channels])
    yield found
    found.shutdown()
    until(lambda: not any(s.running for s in found._shards.values()), "the subscribers ended")


@contextlib.contextmanager
def watching(hub: Hub, channels: list[str]) -> Iterator[None]:
    """Watch every one of ``channels`` for the block."""
    with contextlib.ExitStack() as stack:
        for channel in channels:
            stack.enter_context(hub.watch(channel, 1))
        yield


def subscribed(client: redis.Redis, channel: str) -> bool:
    found = client.execute_command("PUBSUB", "SHARDNUMSUB", channel)  # type: ignore[no-untyped-call]
    return bool(found[1] == 1)


def event(version: int, status: str = "QRCODE_SCANNED") -> str:
    """A state event as the transitions script publishes it."""
    return json.dumps({"id": version, "data": {"status": status, "expire": 0}})


def test_events_reach_every_waiter_on_the_channel(hub: Hub, client: redis.Redis) -> None:
    with hub.watch("ch-a", 1) as first, hub.watch("ch-a", 1) as second:
        until(lambda: subscribed(client, "ch-a"), "subscribed")
        assert hub.waiting == 2
        client.spublish("ch-a", event(2))
        assert first.wait(margin(PROMPT_S)) and second.wait(margin(PROMPT_S))
        for waiter in (first, second):
            latest, resync = waiter.take()
            assert latest is not None and latest.snapshot.version == 2 and not resync
        client.spublish("ch-a", "not an event: read the store again")
        assert first.wait(margin(PROMPT_S))
        assert first.take() == (None, True)
    assert hub.waiting == 0


def test_one_connection_for_every_channel_and_channels_leave_together(
    hub: Hub, client: redis.Redis
) -> None:
    channels = [f"ch-{n}" for n in range(50)]
    with watching(hub, channels):
        until(lambda: all(subscribed(client, c) for c in channels), "all subscribed")
        (shard,) = hub._shards.values()
        assert shard.requested == set(channels)
        pubsub_clients = [c for c in client.client_list() if "ssubscribe" in c["cmd"]]
        assert len(pubsub_clients) == 1
    # Gathered, then left in one command LEAVE_AFTER_S after the first of them.
    until(lambda: shard.leaving == set(channels), "gathered to leave")
    before = sunsubscribes(client)
    assert all(subscribed(client, c) for c in channels)
    until(lambda: not any(subscribed(client, c) for c in channels), "all left", 10)
    assert not shard.requested and not shard.leaving
    assert sunsubscribes(client) - before == 1


def sunsubscribes(client: redis.Redis) -> int:
    """How many SUNSUBSCRIBE commands Redis has run."""
    stats = client.info("commandstats").get("cmdstat_sunsubscribe", {})
    return int(stats.get("calls", 0)) if isinstance(stats, dict) else 0


def test_a_change_before_the_subscription_wakes_only_its_waiter(
    hub: Hub, client: redis.Redis, versions: dict[str, int | None]
) -> None:
    """Pub/sub is at-most-once: once subscribed, the hub reads the channels' versions and
    wakes, to re-read, only the waiters behind (or whose state is gone)."""
    versions.update({"ch-moved": 5, "ch-same": 1, "ch-gone": None})
    moved, same, gone = (hub.watch(c, 1) for c in ("ch-moved", "ch-same", "ch-gone"))
    with moved as moved_waiter, same as same_waiter, gone as gone_waiter:
        assert moved_waiter.wait(margin(PROMPT_S)) and moved_waiter.take() == (None, True)
        assert gone_waiter.wait(margin(PROMPT_S)) and gone_waiter.take() == (None, True)
        assert not same_waiter.wait(0.3)
        assert same_waiter.take() == (None, False)


def test_shutdown_closes_every_waiter(hub: Hub) -> None:
    with hub.watch("ch-x", 1) as waiter:
        hub.shutdown()
        assert waiter.wait(margin(PROMPT_S)) and waiter.closed
        with hub.watch("ch-y", 1) as late:
            assert late.closed  # a stopping process takes no new waits


def test_the_subscriber_rests_until_a_message_or_a_change(
    hub: Hub, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With its rest an hour long, the subscriber looks at its socket when a message comes
    or its channels change, not on a clock."""
    monkeypatch.setattr(subscriber, "REST_S", 3600.0)
    looks: list[int] = []
    get_message = redis.client.PubSub.get_message

    def counted(self: redis.client.PubSub, *args: object, **kwargs: object) -> object:
        looks.append(1)
        return get_message(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(redis.client.PubSub, "get_message", counted)
    with hub.watch("ch-rest-a", 1) as a:
        until(lambda: subscribed(client, "ch-rest-a"), "the first channel subscribed")
        gevent.sleep(0.5)
        before = len(looks)
        gevent.sleep(1.5)
        assert len(looks) - before <= 1, f"{len(looks) - before} looks while nothing happened"
        client.spublish("ch-rest-a", "not an event: read the store again")
        assert a.wait(margin(PROMPT_S)), "a message did not wake the subscriber"
        with hub.watch("ch-rest-b", 1) as b:
            until(lambda: subscribed(client, "ch-rest-b"), "a new waiter's channel subscribed")
            client.spublish("ch-rest-b", "again")
            assert b.wait(margin(PROMPT_S))
        until(lambda: not subscribed(client, "ch-rest-b"), "the channel left", 10)


def test_a_lost_subscriber_connection_is_replaced(hub: Hub, client: redis.Redis) -> None:
    """Redis drops the subscriber: the hub reconnects, resubscribes, and the waiter is
    woken to re-read (what changed meanwhile is in the store)."""
    with hub.watch("ch-lost", 1) as waiter:
        until(lambda: subscribed(client, "ch-lost"), "subscribed")
        client.client_kill_filter(_type="pubsub")
        until(lambda: subscribed(client, "ch-lost"), "subscribed again", 10)
        client.spublish("ch-lost", event(3))
        assert waiter.wait(margin(PROMPT_S))
        latest, _ = waiter.take()
        assert latest is not None and latest.snapshot.version == 3
