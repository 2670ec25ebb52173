"""The service where users run it: browsers and phones on networks of their own, a proxy
host, dual-stack sockets, Redis over TLS (servers/lab.py builds the hosts)."""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from itsdangerous import URLSafeTimedSerializer

from servers.lab import Answer, Host, Lab, LabNginx, LabRedis, LabService, stream_from, unavailable
from servers.nginx import BARE, DOCUMENTED
from servers.process import ROOT
from servers.redis_server import TLSFiles
from tests.live import FUNCTIONAL, SECRET

pytestmark = pytest.mark.slow

StartLabService = Callable[..., LabService]
JSON = "Content-Type: application/json"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    with Lab().start() as built:
        yield built


@pytest.fixture(scope="module")
def lab_redis(lab: Lab, server_logs: Path, certificates: TLSFiles) -> Iterator[LabRedis]:
    with LabRedis(lab["redis"], server_logs, certificates).start() as server:
        yield server


@pytest.fixture
def start_lab_service(
    lab: Lab, lab_redis: LabRedis, server_logs: Path, certificates: TLSFiles
) -> Iterator[StartLabService]:
    """The service in its host, on the lab's Redis over TLS (verified with the CA)."""
    started: list[LabService] = []

    def start(**settings: str) -> LabService:
        for service in started:
            service.stop()  # one service host, one port
        env = {
            "SECRET_KEY": SECRET,
            "REDIS_URL": lab_redis.url,
            "QRLOGIN_REDIS_CA_FILE": certificates.ca,
            "QRLOGIN_LIMIT_REFUSED": "1000 per minute",
            **FUNCTIONAL,
            **settings,
        }
        service = LabService(lab["service"], server_logs, env)
        started.append(service)
        return service.start()

    yield start
    for service in started:
        service.stop()
    subprocess.run(lab_redis.cli("flushall"), check=True, capture_output=True)


class LabBrowser:
    """A browser on a lab host: its cookie jar is a file curl keeps."""

    def __init__(self, host: Host, base: str, jar: Path, origin: str | None = None) -> None:
        self.host = host
        self.base = base
        self.jar = str(jar)
        self.origin = origin or base

    def post(self, path: str, body: dict[str, Any], *options: str) -> Answer:
        return self.host.curl(
            self.base + path, "-X", "POST", "-H", JSON, "-H", f"Origin: {self.origin}",
            "-b", self.jar, "-c", self.jar, "-d", json.dumps(body), *options,
        )  # fmt: skip

    def create(self, *options: str) -> Answer:
        return self.post("/v1/accounts/qrcode/", {"platform": "Rxx_PC"}, *options)


def phone(host: Host, base: str, qr_id: str, step: str, secret: str = SECRET) -> Answer:
    """A step of the phone app, signed in with a user token the main app signed."""
    token = URLSafeTimedSerializer(secret, salt="qrlogin.user").dumps(
        {"sub": "u-alice", "name": "Alice"}
    )
    return host.curl(
        base + "/v1/accounts/qrcode_fill", "-X", "POST", "-H", JSON,
        "-H", f"Authorization: Bearer {token}",
        "-d", json.dumps({"id": qr_id, "step": step}),
    )  # fmt: skip


@pytest.mark.parametrize("family", [4, 6])
def test_relay_warning_across_networks_only(
    lab: Lab, start_lab_service: StartLabService, tmp_path: Path, family: int
) -> None:
    """The service listens on [::] (dual stack): IPv4 browsers and phones reach it as
    ::ffff:a.b.c.d. The phone on the browser's network sees no warning; the phone on
    another network does, over IPv4 and over IPv6."""
    service = start_lab_service()
    base = service.url(family)
    browser = LabBrowser(lab["browser"], base, tmp_path / "jar")
    expected_ip = lab["browser"].ipv4 if family == 4 else lab["browser"].ipv6

    created = browser.create()
    assert created.status == 201, created.body
    near_qr = created.json()["data"]["id"]
    near = phone(lab["near"], base, near_qr, "SCAN").json()["data"]
    assert near["client"]["ip"] == expected_ip  # unwrapped, not ::ffff:198.18.1.10
    assert near["network"]["same_network"] is True, near
    assert near["network"]["same_address"] is False
    assert near["network"]["warning"] is None

    far_qr = browser.create().json()["data"]["id"]
    far = phone(lab["far"], base, far_qr, "SCAN").json()["data"]
    assert far["client"]["ip"] == expected_ip
    assert far["network"]["same_network"] is False, far
    assert far["network"]["warning"].startswith("This request comes from another network")


def test_ipv6_clients_are_limited_by_their_64(
    lab: Lab, start_lab_service: StartLabService, tmp_path: Path
) -> None:
    """Addresses of one /64 share a creation limit; another network has its own, and two
    IPv4 addresses of one /24 are still two clients."""
    service = start_lab_service(QRLOGIN_LIMIT_CREATE="4 per minute")
    base = service.url(6)
    home = lab["browser"]
    with home.more_ipv6(range(0x100, 0x105)) as addresses:
        answers = [
            LabBrowser(home, base, tmp_path / f"jar-{n}").create("--interface", address).status
            for n, address in enumerate(addresses)
        ]
    assert answers == [201, 201, 201, 201, 429], answers
    assert LabBrowser(lab["far"], base, tmp_path / "far").create().status == 201

    v4 = service.url(4)
    for n in range(4):
        assert LabBrowser(home, v4, tmp_path / f"v4-{n}").create().status == 201
    assert LabBrowser(lab["near"], v4, tmp_path / "v4-near").create().status == 201


PROXY_MODES = {
    # README's lines, with QRLOGIN_TRUSTED_PROXIES=1: the browser's address, host and scheme.
    "documented": (DOCUMENTED, {"QRLOGIN_TRUSTED_PROXIES": "1"}),
    # A bare proxy_pass and the public origin: the Origin check passes, addresses are lost.
    "bare": (BARE, {"QRLOGIN_PUBLIC_ORIGIN": "http://198.18.3.10"}),
    # Forwarded headers the service was not told to read: it says so.
    "unread headers": (DOCUMENTED, {"QRLOGIN_PUBLIC_ORIGIN": "http://198.18.3.10"}),
}


@pytest.mark.parametrize("mode", list(PROXY_MODES))
@pytest.mark.parametrize("family", [4, 6])
def test_whole_flow_through_the_proxy_host(
    lab: Lab,
    start_lab_service: StartLabService,
    server_logs: Path,
    tmp_path: Path,
    mode: str,
    family: int,
) -> None:
    lines, settings = PROXY_MODES[mode]
    service = start_lab_service(**settings)
    with LabNginx(lab["proxy"], server_logs, lab["service"], lines).start() as nginx:
        base = nginx.url(family)
        origin = "http://198.18.3.10" if mode != "documented" else base
        browser = LabBrowser(lab["browser"], base, tmp_path / "jar", origin=origin)
        scanned = whole_login(browser, lab["far"])
        ready = lab["service"].curl(service.url(4) + "/readyz").json()["data"]
        browser_ip = lab["browser"].ipv4 if family == 4 else lab["browser"].ipv6
        if mode == "documented":
            assert scanned["client"]["ip"] == browser_ip
            assert scanned["network"]["warning"], scanned  # the far phone is warned
            assert ready["warnings"] == []
        else:
            # The service sees only the proxy: what QRLOGIN_PUBLIC_ORIGIN alone gives up.
            assert scanned["client"]["ip"] == lab["proxy"].ipv6
            if mode == "bare":
                assert ready["warnings"] == []
            else:
                assert "QRLOGIN_TRUSTED_PROXIES" in ready["warnings"][0], ready
                assert "QRLOGIN_TRUSTED_PROXIES=0 ignores them" in service.log()


def whole_login(browser: LabBrowser, phone_host: Host, secret: str = SECRET) -> dict[str, Any]:
    """Create, stream, scan and confirm from ``phone_host``, redeem once: the scan's
    answer (what the phone was shown)."""
    base = browser.base
    created = browser.create()
    assert created.status == 201, created.body
    assert created.headers.get("x-request-id")
    qr = created.json()["data"]
    with stream_from(browser.host, base + qr["events"], browser.jar, 30) as events:
        scanned: dict[str, Any] = phone(phone_host, base, qr["id"], "SCAN", secret).json()["data"]
        assert phone(phone_host, base, qr["id"], "VERIFY", secret).status == 200
    statuses = [json.loads(line[5:])["status"] for line in events if line.startswith("data:")]
    assert statuses[0] == "QRCODE_WAIT" and statuses[-1] == "QRCODE_SUCCESS", events
    redeemed = browser.post("/v1/passport/guest", {"code": qr["id"]})
    assert redeemed.status == 200 and redeemed.json()["data"]["token"], redeemed.body
    again = browser.post("/v1/passport/guest", {"code": qr["id"]})
    assert "token" not in (again.json()["data"] or {}), again.body  # once only
    return scanned


def test_the_heroku_settings_log_in(
    lab: Lab, start_lab_service: StartLabService, server_logs: Path, tmp_path: Path
) -> None:
    """README's Heroku steps: app.json's settings and a generated SECRET_KEY, a Redis
    whose certificate the service cannot verify and no CA file (Heroku Redis), behind
    one proxy that forwards the client's address, scheme and port (the router)."""
    app_json = json.loads((ROOT / "app.json").read_text())
    settings = {name: spec["value"] for name, spec in app_json["env"].items() if "value" in spec}
    assert settings == {"QRLOGIN_TRUSTED_PROXIES": "1", "QRLOGIN_REDIS_TLS_VERIFY": "none"}
    assert app_json["env"]["SECRET_KEY"]["generator"] == "secret"
    assert app_json["addons"][0]["plan"].startswith("heroku-redis")
    secret = secrets.token_urlsafe(48)
    start_lab_service(SECRET_KEY=secret, QRLOGIN_REDIS_CA_FILE="", **settings)
    with LabNginx(lab["proxy"], server_logs, lab["service"], DOCUMENTED).start() as router:
        browser = LabBrowser(lab["browser"], router.url(4), tmp_path / "jar")
        scanned = whole_login(browser, lab["far"], secret)
    assert scanned["client"]["ip"] == lab["browser"].ipv4
    assert scanned["network"]["warning"]


def readyz(host: Host, service: LabService) -> Answer:
    return host.curl(service.url(4) + "/readyz")


def test_redis_tls_with_the_ca_file(lab: Lab, start_lab_service: StartLabService) -> None:
    service = start_lab_service()  # QRLOGIN_REDIS_CA_FILE: the tests' CA
    ready = readyz(lab["service"], service)
    assert ready.status == 200 and ready.json()["data"]["redis"] == "ok", ready.body


def test_redis_tls_without_verification(lab: Lab, start_lab_service: StartLabService) -> None:
    """Heroku Redis: a self-signed certificate, no CA file to give."""
    service = start_lab_service(QRLOGIN_REDIS_CA_FILE="", QRLOGIN_REDIS_TLS_VERIFY="none")
    ready = readyz(lab["service"], service)
    assert ready.status == 200, ready.body


@pytest.mark.parametrize("ca", ["another CA", "the system's CAs"])
def test_redis_tls_that_does_not_verify_says_why(
    lab: Lab, start_lab_service: StartLabService, other_ca: TLSFiles, tmp_path: Path, ca: str
) -> None:
    service = start_lab_service(
        QRLOGIN_REDIS_CA_FILE=other_ca.ca if ca == "another CA" else "",
    )
    ready = readyz(lab["service"], service)
    assert ready.status == 503, ready.body
    cause = ready.json()["data"]["cause"]
    assert "QRLOGIN_REDIS_CA_FILE" in cause and "QRLOGIN_REDIS_TLS_VERIFY=none" in cause
    assert ready.headers["retry-after"]
    created = LabBrowser(lab["browser"], service.url(4), tmp_path / "jar").create()
    assert created.status == 503 and created.json()["code"] == "UNAVAILABLE"
    assert created.headers["retry-after"]
    log = service.log()
    assert "did not verify: set QRLOGIN_REDIS_CA_FILE" in log
    assert "Traceback" not in log, log
    assert re.search(r"rate limits skipped, Redis failed: Redis's TLS certificate", log), log
