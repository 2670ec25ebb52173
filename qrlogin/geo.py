"""Where a request comes from, as the phone is shown it: the country of an IP address
(iptocc ships its data and works offline), or country and city from a MaxMind-format
database an operator names, and how the phone's address compares with the browser's.

This is what an attacker who relays a QR from their own page cannot choose: their
browser's address. Everything else in the prompt (browser, OS, platform) they can.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import iptocc
import pycountry

from qrlogin.exceptions import ConfigError

#: Addresses in the same /24 (IPv4) or /64 (IPv6) count as the same network.
IPV4_NETWORK_BITS = 24
IPV6_NETWORK_BITS = 64


@dataclass(frozen=True)
class Place:
    """An address's approximate location; any part may be unknown."""

    country: str | None
    country_name: str | None
    city: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"country": self.country, "country_name": self.country_name, "city": self.city}


def script_args(place: Place | None, prefix: str = "") -> dict[str, str]:
    """A place as the Lua scripts take it: every part a string, empty when unknown."""
    parts = place.as_dict() if place else {"country": None, "country_name": None, "city": None}
    return {prefix + name: value or "" for name, value in parts.items()}


def country_name(code: str) -> str:
    found = pycountry.countries.get(alpha_2=code)
    return str(getattr(found, "common_name", None) or found.name) if found else code


class Locator:
    """Looks addresses up in the shipped data, or in ``database`` (a .mmdb file)."""

    def __init__(self, database: str | None = None) -> None:
        self._reader: Any = None
        if database:
            import maxminddb

            try:
                self._reader = maxminddb.open_database(database)
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
                raise ConfigError(f"QRLOGIN_GEOIP_DB: cannot read {database!r}: {error}") from None
        self.locate = lru_cache(maxsize=4096)(self._locate)

    def _locate(self, ip: str) -> Place | None:
        """None for addresses that have no location (private, loopback) or are unknown."""
        try:
            address = unmapped(ip)
        except ValueError:
            return None
        if not address.is_global:
            return None
        if self._reader is not None:
            return _from_record(self._reader.get(str(address)))
        code = iptocc.country_code(str(address))
        return Place(code, country_name(code)) if code else None


def _from_record(record: Any) -> Place | None:
    if not isinstance(record, dict):
        return None
    country = record.get("country") or record.get("registered_country") or {}
    code = country.get("iso_code")
    names = country.get("names") or {}
    city = (record.get("city") or {}).get("names", {}).get("en")
    if not code and not city:
        return None
    return Place(code, names.get("en") or (country_name(code) if code else None), city)


def unmapped(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """``text`` as an address, an IPv4-mapped IPv6 one (``::ffff:192.0.2.1``, as a
    dual-stack socket sees an IPv4 client) as the IPv4 address it carries; ValueError
    when it is no address."""
    address = ipaddress.ip_address(text)
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped or address


def same_network(a: str, b: str) -> bool:
    try:
        first, second = unmapped(a), unmapped(b)
    except ValueError:
        return False
    if first.version != second.version:
        return False
    bits = IPV4_NETWORK_BITS if first.version == 4 else IPV6_NETWORK_BITS
    network = ipaddress.ip_network(f"{first}/{bits}", strict=False)
    return second in network


def _comparable(ip: str) -> str:
    try:
        return str(unmapped(ip))
    except ValueError:
        return ip


def compare(
    requester_ip: str, requester: Place | None, phone_ip: str, phone: Place | None
) -> dict[str, Any]:
    """How the browser that asked differs from the phone, with a plain warning when it
    does: "This request comes from another network, in Germany." """
    same_address = _comparable(requester_ip) == _comparable(phone_ip)
    nearby = same_address or same_network(requester_ip, phone_ip)
    same_country = (
        None if requester is None or phone is None or not requester.country or not phone.country
        else requester.country == phone.country
    )  # fmt: skip
    warning = None
    if not nearby:
        parts = [requester.city, requester.country_name] if requester else []
        where = ", ".join(p for p in parts if p)
        warning = "This request comes from another network" + (f", in {where}." if where else ".")
        if same_country is False and phone and phone.country_name:
            warning += f" Your phone's network is in {phone.country_name}."
    return {
        "same_address": same_address,
        "same_network": nearby,
        "same_country": same_country,
        "warning": warning,
    }
