"""What the phone is shown about the browser that asks: where it is (from its address,
which a relaying attacker cannot choose), how that compares with the phone, and when
the browser learns who scanned."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from qrlogin import create_app
from qrlogin.exceptions import ConfigError
from tests.conftest import bearer, guest
from tests.live import user_token

GERMANY, BRITAIN = "195.201.0.1", "81.2.69.160"
CHROME_WIN = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def proxied_app(env: dict[str, str], **settings: str) -> Flask:
    return create_app({**env, "QRLOGIN_TRUSTED_PROXIES": "1", **settings})


def scan_from(app: Flask, browser_ip: str, phone_ip: str) -> dict[str, Any]:
    """A QR created from ``browser_ip`` and scanned from ``phone_ip``: the SCAN answer."""
    browser = app.test_client()
    created = browser.post(
        "/v1/accounts/qrcode/",
        json={"platform": "web"},
        headers={"X-Forwarded-For": browser_ip, "User-Agent": CHROME_WIN},
    )
    qr_id = created.json["data"]["id"]
    answer = app.test_client().post(
        "/v1/accounts/qrcode_fill",
        json={"id": qr_id, "step": "SCAN"},
        headers={**bearer(user_token()), "X-Forwarded-For": phone_ip},
    )
    assert answer.status_code == 200, answer.json
    data: dict[str, Any] = answer.json["data"]
    return data


def test_a_request_from_another_country_says_so(env: dict[str, str]) -> None:
    data = scan_from(proxied_app(env), GERMANY, BRITAIN)
    client = data["client"]
    assert client["location"] == {"country": "DE", "country_name": "Germany", "city": None}
    assert client["browser"] == "Chrome 131" and client["os"] == "Windows 10"
    assert data["network"] == {
        "same_address": False,
        "same_network": False,
        "same_country": False,
        "warning": "This request comes from another network, in Germany. "
        "Your phone's network is in United Kingdom.",
    }


@pytest.mark.parametrize(
    ("browser_ip", "phone_ip", "same_address"),
    [(GERMANY, GERMANY, True), ("195.201.0.1", "195.201.0.77", False)],
    ids=["same address", "same network"],
)
def test_the_same_network_needs_no_warning(
    env: dict[str, str], browser_ip: str, phone_ip: str, same_address: bool
) -> None:
    network = scan_from(proxied_app(env), browser_ip, phone_ip)["network"]
    assert network["same_address"] is same_address
    assert network["same_network"] is True and network["warning"] is None


def test_an_address_without_a_location_still_warns(env: dict[str, str]) -> None:
    data = scan_from(proxied_app(env), "10.1.2.3", BRITAIN)
    assert data["client"]["location"] is None
    assert data["network"]["warning"] == "This request comes from another network."
    assert data["network"]["same_country"] is None


def maxmind_database(path: Path) -> Path:
    writer = MMDBWriter(ip_version=6, database_type="GeoIP2-City", ipv4_compatible=True)
    writer.insert_network(
        IPSet(["195.201.0.0/16"]),
        {
            "country": {"iso_code": "DE", "names": {"en": "Germany"}},
            "city": {"names": {"en": "Falkenstein"}},
        },
    )
    writer.insert_network(
        IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB", "names": {"en": "Britain"}}}
    )
    writer.to_db_file(str(path))
    return path


def test_an_operators_maxmind_database_gives_the_city(env: dict[str, str], tmp_path: Path) -> None:
    database = maxmind_database(tmp_path / "city.mmdb")
    data = scan_from(proxied_app(env, QRLOGIN_GEOIP_DB=str(database)), GERMANY, BRITAIN)
    assert data["client"]["location"] == {
        "country": "DE",
        "country_name": "Germany",
        "city": "Falkenstein",
    }
    assert data["network"]["warning"].startswith(
        "This request comes from another network, in Falkenstein, Germany."
    )


def test_an_unreadable_database_stops_the_start(env: dict[str, str], tmp_path: Path) -> None:
    (tmp_path / "broken.mmdb").write_bytes(b"not a database")
    for path in (tmp_path / "missing.mmdb", tmp_path / "broken.mmdb"):
        with pytest.raises(ConfigError, match="QRLOGIN_GEOIP_DB"):
            create_app({**env, "QRLOGIN_GEOIP_DB": str(path)})


@pytest.mark.parametrize(("reveal", "after_scan"), [("scan", True), ("confirm", False)])
def test_when_the_browser_learns_who_scanned(
    env: dict[str, str], reveal: str, after_scan: bool
) -> None:
    app = create_app({**env, "QRLOGIN_REVEAL_SCANNER": reveal})
    browser = app.test_client()
    qr_id = browser.post("/v1/accounts/qrcode/", json={"platform": "web"}).json["data"]["id"]
    token = user_token("u-alice", "Alice")
    phone = app.test_client()
    phone.post(
        "/v1/accounts/qrcode_fill", json={"id": qr_id, "step": "SCAN"}, headers=bearer(token)
    )
    scanned = guest(browser, qr_id).json["data"]
    assert scanned["status"] == "QRCODE_SCANNED"
    assert ("user" in scanned) is after_scan
    phone.post(
        "/v1/accounts/qrcode_fill", json={"id": qr_id, "step": "VERIFY"}, headers=bearer(token)
    )
    confirmed = guest(browser, qr_id).json["data"]
    assert confirmed["status"] == "QRCODE_SUCCESS" and confirmed["user"]["name"] == "Alice"
