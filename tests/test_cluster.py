"""Redis Cluster: the service on a real local cluster (3 masters with a replica each,
started by the suite), through gunicorn + gevent and real SSE clients."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redis.crc
import requests

from qrlogin.config import Settings
from qrlogin.keys import Keys
from qrlogin.limits import storage_uri
from servers.cluster import LocalCluster
from servers.service import Service
from tests.conftest import StartService
from tests.live import (
    PROMPT_S,
    SECRET,
    Browser,
    SSEStream,
    margin,
    metric,
    phone_step,
    user_token,
    wait_until,
)

pytestmark = pytest.mark.slow
CLUSTER = {"QRLOGIN_REDIS_MODE": "cluster"}


def on_cluster(
    start: StartService, cluster: LocalCluster, workers: int = 1, **settings: str
) -> Service:
    return start(
        redis_url=cluster.url, workers=workers, **{"QRLOGIN_RATE_LIMITS": "off", **CLUSTER,
                                                   **settings}
    )  # fmt: skip


def slot(key: str) -> int:
    return redis.crc.key_slot(key.encode())


def test_the_keys_of_each_script_share_a_slot() -> None:
    qr_id, user, sid = "Zx9_abc-DEF", "u-alice", "s3ss10n"
    assert len({slot(Keys.qr(qr_id)), slot(Keys.channel(qr_id)), slot(Keys.audit(qr_id))}) == 1
    user_keys = [
        Keys.session(user, sid), Keys.session_channel(user, sid), Keys.user_sessions(user),
        Keys.user(user), Keys.user_notices(user), Keys.user_channel(user),
    ]  # fmt: skip
    assert len({slot(k) for k in user_keys}) == 1
    # ...and the state behind each channel is found from the channel's name.
    assert Keys.state_of_channel(Keys.session_channel(user, sid)) == Keys.session(user, sid)


def test_the_limiter_counts_on_the_cluster() -> None:
    def uri(url: str, mode: str) -> str:
        env = {"SECRET_KEY": SECRET, "REDIS_URL": url, "QRLOGIN_REDIS_MODE": mode}
        return storage_uri(Settings.from_env(env))

    assert uri("redis://10.0.0.5:7000/0", "cluster") == "redis+cluster://10.0.0.5:7000/0"
    assert uri("redis://10.0.0.5:6379/0", "single") == "redis://10.0.0.5:6379/0"


def qrs_on_every_master(
    base_url: str, cluster: LocalCluster, each: int
) -> dict[int, list[tuple[Browser, str]]]:
    """Create QRs, each in a browser of its own, until every master holds ``each`` of
    them: by master's port, the browsers and their QRs' ids."""
    masters = {m.port for m in cluster.masters()}
    found: dict[int, list[tuple[Browser, str]]] = {port: [] for port in masters}
    while min(len(qrs) for qrs in found.values()) < each:
        browser = Browser(base_url)
        qr_id = browser.create()["id"]
        found[cluster.master_of(Keys.qr(qr_id)).port].append((browser, qr_id))
    return found


def statuses_until_final(stream: SSEStream) -> list[str]:
    seen = []
    for event in stream.events():
        seen.append(event.json["status"])
        if event.json["status"] in ("QRCODE_SUCCESS", "QRCODE_CANCEL", "QRCODE_EXPIRE"):
            break
    return seen


def test_full_logins_on_every_shard(
    start_service: StartService, redis_cluster: LocalCluster
) -> None:
    """Over SSE and over the long poll, with QRs on each master; then the session."""
    redis_cluster.flush()
    service = on_cluster(start_service, redis_cluster)
    token = user_token()
    for qrs in qrs_on_every_master(service.url, redis_cluster, each=2).values():
        (browser, by_stream), (poller, by_poll) = qrs[:2]

        stream = browser.stream(by_stream)
        assert next(stream.events()).json["status"] == "QRCODE_WAIT"
        assert phone_step(service.url, token, by_stream, "SCAN").status_code == 200
        assert next(stream.events()).json["status"] == "QRCODE_SCANNED"
        assert phone_step(service.url, token, by_stream, "VERIFY").status_code == 200
        assert next(stream.events()).json["status"] == "QRCODE_SUCCESS"
        stream.close()
        assert "token" in browser.guest(by_stream).json()["data"]

        threading.Timer(0.3, phone_step, (service.url, token, by_poll, "SCAN")).start()
        held = poller.guest(by_poll, wait=10, since="QRCODE_WAIT").json()["data"]
        assert held["status"] == "QRCODE_SCANNED"
        threading.Timer(0.3, phone_step, (service.url, token, by_poll, "VERIFY")).start()
        redeemed = poller.guest(by_poll, wait=10, since="QRCODE_SCANNED").json()["data"]
        assert redeemed["status"] == "QRCODE_SUCCESS" and redeemed["token"]

        for logged_in in (browser, poller):
            me = logged_in.session.get(service.url + "/v1/passport/me", timeout=margin(30))
            assert me.json()["data"]["user"]["id"] == "u-alice"
    sessions = requests.get(
        service.url + "/v1/accounts/sessions",
        headers={"Authorization": f"Bearer {token}"},
        timeout=margin(30),
    ).json()["data"]["sessions"]
    assert len(sessions) == 6


def test_two_instances_deliver_each_others_events(
    start_service: StartService, redis_cluster: LocalCluster
) -> None:
    redis_cluster.flush()
    first = on_cluster(start_service, redis_cluster)
    second = on_cluster(start_service, redis_cluster)
    token = user_token()
    for qrs in qrs_on_every_master(first.url, redis_cluster, each=1).values():
        browser, qr_id = qrs[0]
        stream = browser.stream(qr_id)
        assert next(stream.events()).json["status"] == "QRCODE_WAIT"
        sent = time.monotonic()
        assert phone_step(second.url, token, qr_id, "SCAN").status_code == 200
        event = next(stream.events())
        assert event.json["status"] == "QRCODE_SCANNED"
        assert event.at - sent < margin(PROMPT_S)
        stream.close()


def test_one_subscriber_per_shard_whatever_the_waiters(
    start_service: StartService, redis_cluster: LocalCluster
) -> None:
    """60 browsers waiting across 3 masters: the worker holds one subscriber connection
    on each master, subscribed to exactly the channels waited on there, and a bounded
    command pool."""
    redis_cluster.flush()
    service = on_cluster(start_service, redis_cluster)
    found = qrs_on_every_master(service.url, redis_cluster, each=20)
    streams = [browser.stream(qr_id) for qrs in found.values() for browser, qr_id in qrs[:20]]
    for stream in streams:
        assert next(stream.events()).json["status"] == "QRCODE_WAIT"
    for port, qrs in found.items():
        node = next(n for n in redis_cluster.nodes if n.port == port).client()
        channels = {Keys.channel(qr_id) for _, qr_id in qrs[:20]}

        def subscribed(node: redis.Redis = node, channels: set[str] = channels) -> bool:
            return set(node.pubsub_shardchannels()) == channels

        wait_until(subscribed, 10, f"the channels waited on at master {port} are subscribed")
        names = [c.get("name") for c in node.client_list()]
        assert names.count("qrlogin-hub") == 1, names
        assert names.count("qrlogin") <= 20, names
    for replica in set(redis_cluster.nodes) - set(redis_cluster.masters()):
        assert "qrlogin-hub" not in [c.get("name") for c in replica.client().client_list()]
    ready = requests.get(service.url + "/readyz", timeout=margin(30)).json()["data"]
    assert ready["redis"] == "cluster"
    assert ready["cluster"]["state"] == "ok" and ready["cluster"]["slots_ok"] == 16384
    assert len(ready["cluster"]["masters"]) == 3
    for stream in streams:
        stream.close()


def test_limits_hold_on_the_cluster(
    start_service: StartService, redis_cluster: LocalCluster
) -> None:
    """The rate limiter and the live-QR cap count on the cluster (each on its own slot)."""
    redis_cluster.flush()
    service = on_cluster(
        start_service, redis_cluster, QRLOGIN_RATE_LIMITS="on", QRLOGIN_LIMIT_CREATE="6 per minute",
        QRLOGIN_MAX_LIVE_QRS="3",
    )  # fmt: skip
    browser = Browser(service.url)
    ids = [browser.create()["id"] for _ in range(3)]
    capped = browser.session.post(
        service.url + "/v1/accounts/qrcode/", json={"platform": "Rxx_PC"}, timeout=margin(30)
    )
    assert capped.status_code == 429 and capped.json()["code"] == "SLOW_DOWN"
    # Regenerating replaces a code and frees its place (on the browser's slot); the
    # sixth create of this address is the last the limiter lets through.
    browser.create(code=ids[0])
    other = Browser(service.url)
    other.create()
    limited = other.session.post(
        service.url + "/v1/accounts/qrcode/", json={"platform": "Rxx_PC"}, timeout=margin(30)
    )
    assert limited.status_code == 429 and "Retry-After" in limited.headers


@pytest.fixture
def own_cluster(server_logs: Path) -> Iterator[LocalCluster]:
    """A cluster of this test's own, since it kills a master."""
    with LocalCluster(server_logs).start() as cluster:
        yield cluster


def replicated(cluster: LocalCluster, keys: list[str]) -> bool:
    """Whether the replica of each key's master holds the key."""
    for key in keys:
        replica = cluster.replica_of(cluster.master_of(key)).client()
        replica.execute_command("READONLY")  # type: ignore[no-untyped-call]
        if not replica.exists(key):
            return False
    return True


def test_failover_mid_wait(start_service: StartService, own_cluster: LocalCluster) -> None:
    """Browsers wait on QRs held by one master; the master is killed and its replica
    takes over. The browsers still get their events when the phone confirms, and new
    logins work. Prints how long the service took to recover."""
    service = on_cluster(start_service, own_cluster, workers=2)
    found = qrs_on_every_master(service.url, own_cluster, each=4)
    victim_port = next(iter(found))
    victim = next(n for n in own_cluster.nodes if n.port == victim_port)
    waiting = [qr_id for _, qr_id in found[victim_port]]
    streams = [browser.stream(qr_id) for browser, qr_id in found[victim_port]]
    for stream in streams:
        assert next(stream.events()).json["status"] == "QRCODE_WAIT"
    wait_until(lambda: replicated(own_cluster, [Keys.qr(q) for q in waiting]), 10, "replicated")
    events: dict[str, list[str]] = {q: [] for q in waiting}
    arrived: dict[str, float] = {}

    def read(qr_id: str, stream: SSEStream) -> None:
        events[qr_id] = statuses_until_final(stream)
        arrived[qr_id] = time.monotonic()

    readers = [
        threading.Thread(target=read, args=(q, s), daemon=True)
        for q, s in zip(waiting, streams, strict=True)
    ]
    for reader in readers:
        reader.start()

    killed = time.monotonic()
    victim.stop()
    token = user_token()
    first_ok: float | None = None
    for qr_id in waiting:
        for step in ("SCAN", "VERIFY"):
            deadline = time.monotonic() + margin(60)
            while (answer := phone_step(service.url, token, qr_id, step)).status_code == 503:
                assert time.monotonic() < deadline, "the cluster did not recover"
                time.sleep(0.1)
            assert answer.status_code == 200, answer.text
            first_ok = first_ok or time.monotonic()
    for reader in readers:
        reader.join(margin(30))
    # Each stream ends at SUCCESS; a SCANNED made while its subscriber was away is folded
    # into the newest state (the contract's coalescing), never delivered out of order.
    for seen in events.values():
        assert seen in (["QRCODE_SUCCESS"], ["QRCODE_SCANNED", "QRCODE_SUCCESS"]), events
    assert first_ok is not None
    print(
        f"\nfailover: commands back {first_ok - killed:.2f} s after the kill; "
        f"last waiting browser had its SUCCESS {max(arrived.values()) - killed:.2f} s after"
    )
    # New logins work, on every master (the promoted replica included).
    for qrs in qrs_on_every_master(service.url, own_cluster, each=1).values():
        browser, qr_id = qrs[0]
        assert phone_step(service.url, token, qr_id, "SCAN").status_code == 200
        assert phone_step(service.url, token, qr_id, "VERIFY").status_code == 200
        assert "token" in browser.guest(qr_id).json()["data"]
    assert metric(service.url, "qrlogin_redis_failovers_total") >= 1
    assert metric(service.url, "qrlogin_hub_resubscribes_total") >= 1
    ready = requests.get(service.url + "/readyz", timeout=margin(30)).json()["data"]
    assert ready["cluster"]["state"] == "ok"


def move_slot(cluster: LocalCluster, key: str) -> tuple[int, int]:
    """Move ``key``'s slot, with its keys, to another master (as a resharding does);
    the ports of the old and the new owner."""
    slot = redis.crc.key_slot(key.encode())
    source = cluster.master_of(key)
    target = next(m for m in cluster.masters() if m.port != source.port)
    source_id = source.client().execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]
    target_id = target.client().execute_command("CLUSTER MYID")  # type: ignore[no-untyped-call]
    target.client().execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)  # type: ignore[no-untyped-call]
    source.client().execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)  # type: ignore[no-untyped-call]
    keys = source.client().execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)  # type: ignore[no-untyped-call]
    if keys:
        source.client().execute_command(  # type: ignore[no-untyped-call]
            "MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys
        )
    for node in (target, source, *cluster.masters()):
        node.client().execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)  # type: ignore[no-untyped-call]
    return source.port, target.port


def test_a_slot_move_mid_wait(start_service: StartService, own_cluster: LocalCluster) -> None:
    """A waiting browser's QR moves to another master (resharding): the hub follows it
    there, and the browser gets its events."""
    service = on_cluster(start_service, own_cluster)
    browser = Browser(service.url)
    qr_id = browser.create()["id"]
    stream = browser.stream(qr_id)
    assert next(stream.events()).json["status"] == "QRCODE_WAIT"
    channel = Keys.channel(qr_id)
    old = own_cluster.master_of(Keys.qr(qr_id))
    wait_until(lambda: channel in old.client().pubsub_shardchannels(), 10, "subscribed")
    _, new_port = move_slot(own_cluster, Keys.qr(qr_id))
    new = next(n for n in own_cluster.nodes if n.port == new_port)
    wait_until(
        lambda: channel in new.client().pubsub_shardchannels(), 30, "resubscribed on the new owner"
    )
    token = user_token()
    assert phone_step(service.url, token, qr_id, "SCAN").status_code == 200
    assert next(stream.events()).json["status"] == "QRCODE_SCANNED"
    assert metric(service.url, "qrlogin_redis_failovers_total") >= 1
    stream.close()
