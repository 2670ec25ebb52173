"""Fixtures: a real Redis (found or started), an app on a clean database, clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from playwright.sync_api import Browser as Chromium
from playwright.sync_api import Page, sync_playwright

from qrlogin import create_app, lua
from qrlogin import store as store_module
from qrlogin.models import Snapshot, bind_digest
from qrlogin.services import Services
from servers.cluster import LocalCluster
from servers.process import stop_all
from servers.redis_server import RedisServer, TLSFiles, find_or_start
from servers.service import Service
from tests.live import CHROMIUM, CHROMIUM_ARGS, FUNCTIONAL, SECRET, demo_service


def _gevent_patched() -> bool:
    from gevent import monkey

    return bool(monkey.is_module_patched("socket"))


StartService = Callable[..., Service]


def pytest_sessionfinish() -> None:
    stop_all()  # whatever a failed fixture left running


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the servers that tests start write their logs."""
    return tmp_path_factory.mktemp("servers")


@pytest.fixture(scope="session")
def redis_url(server_logs: Path) -> Iterator[str]:
    try:
        url, server = find_or_start(server_logs)
    except RuntimeError as error:
        pytest.exit(str(error), returncode=2)
    yield url
    if server is not None:
        server.stop()


@pytest.fixture
def start_service(redis_url: str, server_logs: Path) -> Iterator[StartService]:
    """Start services (gunicorn + gevent) on a flushed Redis; all are stopped afterwards."""
    redis.Redis.from_url(redis_url).flushdb()
    started: list[Service] = []

    def start(
        redis_url: str = redis_url,
        workers: int = 1,
        tls: TLSFiles | None = None,
        start: bool = True,
        **settings: str,
    ) -> Service:
        """The service, started (with ``start=False``, only made: the test starts it)."""
        env = {"SECRET_KEY": SECRET, "REDIS_URL": redis_url, **FUNCTIONAL, **settings}
        service = Service(env, server_logs, workers=workers, tls=tls)
        started.append(service)
        return service.start() if start else service

    yield start
    for service in started:
        service.stop()


#: Parametrize a module with this to run its tests on both engines.
BOTH_ENGINES = pytest.mark.parametrize("engine", ["redis", "embedded"])


@pytest.fixture
def engine() -> str:
    """Which engine the app uses: the real Redis server, or "embedded" (no REDIS_URL)."""
    return "redis"


@pytest.fixture
def env(redis_url: str, engine: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment the app is built from; tests may change it before using ``app``.
    ``engine`` "cluster" puts the app on the local Redis Cluster."""
    # Contract tests create many QRs from one test browser: limits have tests of their own.
    base = {"SECRET_KEY": SECRET, "QRLOGIN_RATE_LIMITS": "off"}
    if engine == "embedded":
        return base
    if engine == "cluster":
        cluster: LocalCluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        return {**base, "REDIS_URL": cluster.url, "QRLOGIN_REDIS_MODE": "cluster"}
    return {**base, "REDIS_URL": redis_url}


@pytest.fixture
def app(env: dict[str, str]) -> Iterator[Flask]:
    app = create_app(env)
    svc(app).redis.flushdb()
    yield app
    client = svc(app).redis
    pool = getattr(client, "connection_pool", None)  # a cluster client has one per node
    if pool is not None:
        pool.disconnect()
    else:
        client.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture(scope="session")
def redis_cluster(server_logs: Path) -> Iterator[LocalCluster]:
    """A real Redis Cluster (3 masters, 1 replica each) shared by the cluster tests."""
    with LocalCluster(server_logs).start() as cluster:
        yield cluster


@pytest.fixture
def own_redis(server_logs: Path) -> Iterator[RedisServer]:
    """A redis-server only this test uses, so it may stop and restart it."""
    with RedisServer(server_logs).start() as server:
        yield server


def svc(app: Flask) -> Services:
    found: Services = app.extensions["qrlogin"]
    return found


#: The clock line of the transitions script; a shifted clock replaces it.
REDIS_CLOCK = "local clock = redis.call('TIME')"


def shift_clock(app: Flask, seconds: float) -> None:
    """Make the app's store see the Redis clock ``seconds`` ahead (tests only)."""
    shifted_ms = round(seconds * 1000)

    def shifted(source: str) -> str:
        assert source.count(REDIS_CLOCK) == 1
        return source.replace(
            REDIS_CLOCK,
            "local real = redis.call('TIME')\n"
            f"local shifted_us = tonumber(real[2]) + {shifted_ms} * 1000\n"
            "local clock = {tostring(tonumber(real[1]) + math.floor(shifted_us / 1000000)),"
            " tostring(shifted_us % 1000000)}",
        )

    old = svc(app).store
    svc(app).store = store_module.Store(
        old.redis,
        old.qr_ttl_s,
        old.max_live_qrs,
        source=shifted(lua.SOURCE),
        live_source=shifted(lua.LIVE_SOURCE),
        reveal_on_confirm=old.reveal_on_confirm,
    )


def with_cookie(app: Flask, value: str) -> FlaskClient:
    """A new browser holding the binding cookie ``value`` (a copy of another's)."""
    other = app.test_client()
    other.set_cookie("qrlogin_bind", value)
    return other


def snapshot_of(app: Flask, browser: FlaskClient, qr_id: str) -> Snapshot:
    """The QR's state straight from the store, read with the browser's binding."""
    cookie = browser.get_cookie("qrlogin_bind")
    assert cookie is not None
    return svc(app).store.read(qr_id, bind_digest(cookie.value))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def create_qr(client: FlaskClient, **body: Any) -> dict[str, Any]:
    response = client.post("/v1/accounts/qrcode/", json={"platform": "Rxx_PC", **body})
    assert response.status_code == 201, response.json
    data: dict[str, Any] = response.json["data"]
    return data


def fill(client: FlaskClient, token: str, qr_id: str, step: str, **extra: Any) -> Any:
    return client.post(
        "/v1/accounts/qrcode_fill", json={"id": qr_id, "step": step, **extra}, headers=bearer(token)
    )


def guest(client: FlaskClient, qr_id: str, **extra: Any) -> Any:
    return client.post("/v1/passport/guest", json={"code": qr_id, **extra})


@pytest.fixture(scope="session")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """A CA of the tests' own, and a server certificate it signed for every address a
    test server listens on (loopback, and the lab's hosts)."""
    return tls_files(tmp_path_factory.mktemp("tls"), "ca")


@pytest.fixture
def trust(monkeypatch: pytest.MonkeyPatch, certificates: TLSFiles) -> TLSFiles:
    """requests, httpx and Node (in this process and the ones it starts) trust the
    tests' CA."""
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS"):
        monkeypatch.setenv(name, certificates.ca)
    return certificates


@pytest.fixture(scope="session")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    """Another CA, which signed none of the servers' certificates."""
    return tls_files(tmp_path_factory.mktemp("tls-other"), "other-ca")


def tls_files(folder: Path, name: str) -> TLSFiles:
    import trustme

    from servers.lab import SERVER_NAMES

    ca = trustme.CA(organization_name=f"qrlogin tests {name}")
    server = ca.issue_cert("localhost", "127.0.0.1", "::1", *SERVER_NAMES)
    files = TLSFiles(str(folder / "server.pem"), str(folder / "server.key"), str(folder / "ca.pem"))
    server.cert_chain_pems[0].write_to_path(files.cert)
    for more in server.cert_chain_pems[1:]:
        more.write_to_path(files.cert, append=True)
    server.private_key_pem.write_to_path(files.key)
    ca.cert_pem.write_to_path(files.ca)
    return files


#: The tests under gevent run in a process of their own (tests/test_ingevent.py).
collect_ignore = [] if _gevent_patched() else ["ingevent"]


# Chromium, and the demo service its pages load.


@pytest.fixture(scope="module")
def chromium() -> Iterator[Chromium]:
    if CHROMIUM is None:
        pytest.fail("Chromium is needed for the browser tests: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def service(redis_url: str, server_logs: Path) -> Iterator[Service]:
    started = demo_service(redis_url, server_logs)
    yield started
    started.stop()


@pytest.fixture
def page(chromium: Chromium) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 900, "height": 760})
    yield context.new_page()
    context.close()
