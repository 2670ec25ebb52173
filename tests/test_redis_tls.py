"""Redis over TLS in its other modes: a Redis Cluster whose nodes speak only TLS, and a
master and its sentinel that speak only TLS. Every connection the service opens (the
command pool, the hub's subscribers, the rate limiter's) verifies with the CA file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from qrlogin.keys import Keys
from servers.cluster import LocalCluster
from servers.redis_server import RedisServer, SentinelServer, TLSFiles
from tests.conftest import StartService
from tests.live import login_with_a_stream, margin, user_token

pytestmark = pytest.mark.slow

#: The rate limiter's counters (flask-limiter's names around Keys.LIMITS).
LIMITER_KEYS = f"LIMITS:LIMITER/{Keys.LIMITS}*"


@pytest.fixture(params=["cluster", "sentinel"])
def tls_redis(
    request: pytest.FixtureRequest, server_logs: Path, certificates: TLSFiles
) -> Iterator[tuple[str, str, list[RedisServer]]]:
    """A Redis that speaks only TLS, in the given mode: its URL, the mode, and the servers
    that keep the data (where the limiter's counters must be found)."""
    if request.param == "cluster":
        with LocalCluster(server_logs, masters=3, replicas=0, tls=certificates).start() as cluster:
            yield cluster.url, "cluster", list(cluster.masters())
        return
    with (
        RedisServer(server_logs, tls=certificates).start() as master,
        SentinelServer(master, server_logs).start() as sentinel,
    ):
        yield sentinel.url, "sentinel", [master]


def test_every_connection_speaks_tls(
    tls_redis: tuple[str, str, list[RedisServer]],
    start_service: StartService,
    certificates: TLSFiles,
) -> None:
    url, mode, keepers = tls_redis
    assert url.startswith("rediss://")
    service = start_service(
        redis_url=url, QRLOGIN_REDIS_MODE=mode, QRLOGIN_REDIS_CA_FILE=certificates.ca
    )
    ready = requests.get(service.url + "/readyz", timeout=margin(30))
    assert ready.status_code == 200 and ready.json()["data"]["redis"] == mode, ready.text
    login_with_a_stream(service.url, user_token())  # events through the hub, over TLS
    counted = [key for server in keepers for key in server.client().keys(LIMITER_KEYS)]
    assert counted  # the rate limiter reached that Redis too
