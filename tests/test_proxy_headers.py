"""Behind a reverse proxy: whose Host and scheme count, and the Origin check."""

from __future__ import annotations

import ipaddress
import random

import pytest

from qrlogin import create_app
from qrlogin.browser import canonical_ip

PUBLIC = "https://login.example.com:8443"
#: What nginx sends upstream with a bare proxy_pass: the upstream's address as Host.
UPSTREAM_HOST = "127.0.0.1:8001"


def post_create(env: dict[str, str], headers: dict[str, str]) -> int:
    app = create_app(env)
    answer = app.test_client().post(
        "/v1/accounts/qrcode/",
        json={"platform": "web"},
        headers={"Host": UPSTREAM_HOST, "Origin": PUBLIC, **headers},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    return answer.status_code


FORWARDED = {
    "X-Forwarded-Host": "login.example.com:8443",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-For": "198.51.100.7",
}


@pytest.mark.parametrize(
    ("settings", "headers", "status"),
    [
        ({"QRLOGIN_TRUSTED_PROXIES": "1"}, FORWARDED, 201),
        ({"QRLOGIN_TRUSTED_PROXIES": "1"}, {**FORWARDED, "X-Forwarded-Host": "login.example.com",
          "X-Forwarded-Port": "8443"}, 201),
        # Forwarded headers count only from trusted proxies.
        ({}, FORWARDED, 403),
        # A bare proxy_pass sends none: the configured public origin answers for it.
        ({"QRLOGIN_PUBLIC_ORIGIN": PUBLIC}, {}, 201),
        ({}, {}, 403),
    ],
    ids=["forwarded host", "forwarded host and port", "untrusted", "public origin", "bare"],
)  # fmt: skip
def test_browser_posts_through_a_proxy(
    env: dict[str, str], settings: dict[str, str], headers: dict[str, str], status: int
) -> None:
    assert post_create({**env, **settings}, headers) == status


def test_public_origin_is_validated(env: dict[str, str]) -> None:
    from qrlogin.exceptions import ConfigError

    for bad in ("login.example.com", "https://a.example.com,https://b.example.com"):
        with pytest.raises(ConfigError, match="QRLOGIN_PUBLIC_ORIGIN"):
            create_app({**env, "QRLOGIN_PUBLIC_ORIGIN": bad})


def ipaddress_writing(text: str) -> str | None:
    """The address as ``ipaddress`` writes it; an IPv4-mapped one as its IPv4 address."""
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    return str(getattr(address, "ipv4_mapped", None) or address)


def canonical_or_none(text: str) -> str | None:
    try:
        return canonical_ip(text)
    except ValueError:
        return None


def test_mapped_addresses_are_unwrapped() -> None:
    # A dual-stack socket ([::] with IPV6_V6ONLY off) sees an IPv4 client this way.
    assert canonical_ip("::ffff:198.51.100.7") == "198.51.100.7"
    assert canonical_ip("::FFFF:c633:6407") == "198.51.100.7"
    assert canonical_ip("2001:db8::ffff:1.2.3.4") == "2001:db8::ffff:102:304"  # not mapped


def test_addresses_are_written_as_ipaddress_writes_them() -> None:
    # The IPv4 shortcut must agree with ipaddress on every text, taken or refused.
    written = [
        "198.51.100.7", "0.0.0.0", "255.255.255.255", "01.2.3.4", "1.2.3.04", "000.0.0.0",  # noqa: S104
        "1.2.3", "1.2.3.4.5", "256.1.1.1", "1..2.3", "0x1.2.3.4", "+1.2.3.4", "1.2.3.-4",
        "1.2.3.4/32", " 1.2.3.4", "1.2.3.4\x00", "\uff11.2.3.4", "", "-",
        "2001:DB8::1", "::1", "::ffff:1.2.3.4", "fe80::1%eth0", "2001:db8:0:0:0:0:0:1",
    ]  # fmt: skip
    pieces = ["0", "00", "01", "1", "9", "99", "255", "256", "010", "", "a", " 1", "1e1"]
    rng = random.Random(7)
    for _ in range(5000):
        written.append(".".join(rng.choice(pieces) for _ in range(rng.choice([3, 4, 4, 5]))))
    for text in written:
        assert canonical_or_none(text) == ipaddress_writing(text), text
