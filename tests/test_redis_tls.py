"""Redis over TLS in its other modes: a Redis Cluster whose nodes speak only TLS, and a
master and its sentinel that speak only TLS. Every connection the service opens (the
command pool, the hub's subscribers, the rate limiter's) verifies with the CA file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from qrlogin.store import Keys
from qrlogin.testing import LocalCluster, RedisServer, SentinelServer, Service, TLSFiles
from tests.conftest import StartService
from tests.live import Browser, phone_step
from tests.test_stream import user_token
from tests.timing import margin

pytestmark = pytest.mark.slow

#: The rate limiter's counters (flask-limiter's names around Keys.LIMITS).
LIMITER_KEYS = f"LIMITS:LIMITER/{Keys.LIMITS}*"


def login_with_a_stream(service: Service) -> None:
    browser = Browser(service.url)
    qr = browser.create()
    stream = browser.stream(qr["id"])
    events = stream.events()
    assert next(events).json["status"] == "QRCODE_WAIT"
    token = user_token()
    assert phone_step(service.url, token, qr["id"], "SCAN").status_code == 200
    assert next(events).json["status"] == "QRCODE_SCANNED"  # through the hub, over TLS
    assert phone_step(service.url, token, qr["id"], "VERIFY").status_code == 200
    assert next(events).json["status"] == "QRCODE_SUCCESS"
    assert browser.guest(qr["id"]).json()["data"]["token"]


@pytest.fixture
def tls_cluster(server_logs: Path, certificates: TLSFiles) -> Iterator[LocalCluster]:
    with LocalCluster(server_logs, masters=3, replicas=0, tls=certificates).start() as cluster:
        yield cluster


def test_a_cluster_over_tls(
    tls_cluster: LocalCluster, start_service: StartService, certificates: TLSFiles
) -> None:
    assert tls_cluster.url.startswith("rediss://")
    service = start_service(
        redis_url=tls_cluster.url,
        QRLOGIN_REDIS_MODE="cluster",
        QRLOGIN_REDIS_CA_FILE=certificates.ca,
    )
    ready = requests.get(service.url + "/readyz", timeout=margin(30))
    assert ready.status_code == 200 and ready.json()["data"]["cluster"]["state"] == "ok"
    login_with_a_stream(service)
    counted = [k for n in tls_cluster.masters() for k in n.client().keys(LIMITER_KEYS)]
    assert counted  # the rate limiter reached the cluster too


@pytest.fixture
def tls_sentinel(server_logs: Path, certificates: TLSFiles) -> Iterator[SentinelServer]:
    with (
        RedisServer(server_logs, tls=certificates).start() as master,
        SentinelServer(master, server_logs).start() as sentinel,
    ):
        yield sentinel


def test_sentinels_and_their_master_over_tls(
    tls_sentinel: SentinelServer, start_service: StartService, certificates: TLSFiles
) -> None:
    assert tls_sentinel.url.startswith("rediss://")
    service = start_service(
        redis_url=tls_sentinel.url,
        QRLOGIN_REDIS_MODE="sentinel",
        QRLOGIN_REDIS_CA_FILE=certificates.ca,
    )
    ready = requests.get(service.url + "/readyz", timeout=margin(30))
    assert ready.status_code == 200 and ready.json()["data"]["redis"] == "sentinel", ready.text
    login_with_a_stream(service)
    assert tls_sentinel.master.client().keys(LIMITER_KEYS)
