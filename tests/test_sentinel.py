"""Redis Sentinel: a master, its replica and a sentinel started by the suite; the master
is killed while a browser waits, the sentinel promotes the replica, and the service
follows it (QRLOGIN_REDIS_MODE=sentinel)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from qrlogin.config import Settings
from qrlogin.exceptions import ConfigError
from qrlogin.keys import Keys
from qrlogin.limits import storage_uri
from servers.redis_server import RedisServer, SentinelServer
from tests.conftest import StartService
from tests.live import SECRET, Browser, margin, phone_step, user_token, wait_until

pytestmark = pytest.mark.slow


def test_sentinel_settings() -> None:
    env = {"SECRET_KEY": SECRET, "QRLOGIN_REDIS_MODE": "sentinel"}
    with pytest.raises(ConfigError, match="REDIS_URL"):
        Settings.from_env(env)
    with pytest.raises(ConfigError, match="host:port"):
        Settings.from_env({**env, "REDIS_URL": "redis://sentinel-a"})
    settings = Settings.from_env(
        {
            **env,
            "REDIS_URL": "redis://10.0.0.1:26379,10.0.0.2:26379",
            "QRLOGIN_SENTINEL_MASTER": "qr",
        }
    )
    assert settings.sentinel_master == "qr"
    assert storage_uri(settings) == ("redis+sentinel://10.0.0.1:26379,10.0.0.2:26379/qr")


@pytest.fixture
def watched(server_logs: Path) -> Iterator[tuple[RedisServer, RedisServer, SentinelServer]]:
    """A master, its replica, and a sentinel that knows both."""
    with RedisServer(server_logs) as master:
        master.start()
        with RedisServer(server_logs, extra=("--replicaof", "127.0.0.1", "0")) as replica:
            replica.extra = ("--replicaof", "127.0.0.1", str(master.port))
            replica.start()
            with SentinelServer(master, server_logs) as sentinel:
                sentinel.start()
                wait_until(
                    lambda: (
                        sentinel.replicas_known() == 1
                        and replica.client().info("replication")["master_link_status"] == "up"
                    ),
                    30,
                    "the sentinel knows the replica, and the replica is in sync",
                )
                yield master, replica, sentinel


def test_the_service_follows_a_sentinel_failover(
    start_service: StartService, watched: tuple[RedisServer, RedisServer, SentinelServer]
) -> None:
    master, replica, sentinel = watched
    service = start_service(
        redis_url=sentinel.url, QRLOGIN_REDIS_MODE="sentinel", QRLOGIN_RATE_LIMITS="on"
    )
    ready = requests.get(service.url + "/readyz", timeout=margin(30)).json()["data"]
    assert ready["redis"] == "sentinel"
    browser = Browser(service.url)
    qr_id = browser.create()["id"]
    stream = browser.stream(qr_id)
    assert next(stream.events()).json["status"] == "QRCODE_WAIT"
    wait_until(lambda: replica.client().exists(Keys.qr(qr_id)) == 1, 10, "replicated")

    killed = time.monotonic()
    master.stop()
    token = user_token()
    deadline = time.monotonic() + margin(60)
    while (answer := phone_step(service.url, token, qr_id, "SCAN")).status_code == 503:
        assert time.monotonic() < deadline, "the service did not find the new master"
        time.sleep(0.1)
    assert answer.status_code == 200, answer.text
    back = time.monotonic() - killed
    assert sentinel.master_port() == replica.port
    assert next(stream.events()).json["status"] == "QRCODE_SCANNED"
    print(f"\nsentinel failover: commands back {back:.2f} s after the master was killed")
    # New logins work on the promoted replica.
    fresh = Browser(service.url)
    new_id = fresh.create()["id"]
    for step in ("SCAN", "VERIFY"):
        assert phone_step(service.url, token, new_id, step).status_code == 200
    assert "token" in fresh.guest(new_id).json()["data"]
    stream.close()
