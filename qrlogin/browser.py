"""What the service knows about the browser asking: its binding secret and its context."""

from __future__ import annotations

import ipaddress
import re
import secrets
import socket
from functools import lru_cache

import ua_parser
from flask import Request, Response

from qrlogin.geo import unmapped
from qrlogin.models import Actor, Requester, bind_digest
from qrlogin.services import services

BIND_COOKIE = "qrlogin_bind"
#: Browsers accept a cookie with this prefix only over HTTPS, with Secure and Path=/ and
#: no Domain: a sibling subdomain or a plain-HTTP page cannot plant one.
HOST_PREFIX = "__Host-"
#: Longest binding cookie value worth checking (a signed one is about 70 characters, or
#: about 140 with the previous binding's digest).
MAX_BIND_COOKIE_CHARS = 200
#: Separates a browser secret from the digest of the binding it replaced.
PREVIOUS_MARK = "~"
#: Bytes of randomness in a browser secret.
BIND_SECRET_BYTES = 32
#: The binding cookie outlives many QR codes, so a page that regenerates keeps it (seconds).
BIND_COOKIE_MAX_AGE_S = 30 * 24 * 3600
#: Longest user agent kept and shown to the phone (characters).
MAX_USER_AGENT_CHARS = 512


def cookie_name(request: Request, name: str) -> str:
    """``__Host-<name>`` over HTTPS (no other host or path can set it), else ``name``."""
    return HOST_PREFIX + name if request.is_secure else name


def bind_cookie_name(request: Request) -> str:
    return cookie_name(request, BIND_COOKIE)


def only_cookie(request: Request, name: str) -> str | None:
    """The value of the cookie ``name`` (as ``cookie_name`` says it), when one value is
    sent: two different ones (one planted from elsewhere, say) count as none, and the
    same value sent twice (a client's cookie jar and its own header) counts once."""
    values = set(request.cookies.getlist(cookie_name(request, name)))
    return values.pop() if len(values) == 1 else None


def browser_secret(request: Request) -> str | None:
    """The caller's binding cookie, when it is one the service issued (signed with
    SECRET_KEY) and the only one sent. A value the client chose, or two different cookies
    of that name, count as no binding."""
    value = only_cookie(request, BIND_COOKIE)
    if value is None or len(value) > MAX_BIND_COOKIE_CHARS:
        return None
    return value if services().tokens.binding_is_ours(value) else None


#: Stands for "no binding": never equal to a stored digest, so such a caller owns no QR.
NO_BINDING = "-"


def bound_digest(request: Request) -> str:
    """The binding digest of the caller, or ``NO_BINDING``."""
    secret = browser_secret(request)
    return NO_BINDING if secret is None else bind_digest(secret)


def bindings(request: Request) -> tuple[str, str]:
    """The caller's binding digest (or ``NO_BINDING``) and the digest of the binding it
    replaced at its last login ("" if none), from one reading of the cookie."""
    secret = browser_secret(request)
    if secret is None:
        return NO_BINDING, ""
    return bind_digest(secret), previous_of(secret)


def previous_of(secret: str) -> str:
    """The previous binding's digest that a binding cookie the service issued names."""
    return services().tokens.binding_payload(secret).partition(PREVIOUS_MARK)[2]


def new_browser_secret() -> str:
    """A fresh binding cookie value: random, and signed so that the service knows it."""
    return services().tokens.sign_binding(secrets.token_urlsafe(BIND_SECRET_BYTES))


def rotated_secret(request: Request) -> str:
    """The binding a login gives the browser: fresh, so that whoever learned the old one
    cannot bind the browser's next QR codes to it, and remembering the old one's digest,
    so that the QR codes the browser's other tabs show stay its own until they log in."""
    fresh = secrets.token_urlsafe(BIND_SECRET_BYTES) + PREVIOUS_MARK + bound_digest(request)
    return services().tokens.sign_binding(fresh)


def set_bind_cookie(response: Response, request: Request, value: str) -> None:
    set_cookie(response, request, bind_cookie_name(request), value, BIND_COOKIE_MAX_AGE_S)


def set_cookie(response: Response, request: Request, name: str, value: str, max_age_s: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age_s,
        httponly=True,
        samesite="Lax",
        secure=request.is_secure,
        path="/",
    )


#: The browser and OS families the phone is shown by name (as the uap-core rules name
#: them). The rules take some families from the user agent's own text (a "Bot" family,
#: say), which the requester writes: any family not listed here is shown as "Other".
KNOWN_BROWSERS = frozenset({
    "Chrome", "Chrome Mobile", "Chrome Mobile iOS", "Chrome Mobile WebView", "Chromium",
    "HeadlessChrome", "Firefox", "Firefox Mobile", "Firefox iOS", "Safari", "Mobile Safari",
    "Mobile Safari UI/WKWebView", "Edge", "Edge Mobile", "Opera", "Opera Mobile",
    "Opera Mini", "Samsung Internet", "UC Browser", "Yandex Browser", "Vivaldi", "Brave",
    "IE", "IE Mobile", "QQ Browser", "QQ Browser Mobile", "WeChat Browser", "Baidu Browser",
    "Sogou Explorer", "MiuiBrowser", "Huawei Browser", "DuckDuckGo Mobile", "Electron",
})  # fmt: skip
KNOWN_SYSTEMS = frozenset({
    "Windows", "Mac OS X", "iOS", "iPadOS", "Android", "Linux", "Ubuntu", "Debian", "Fedora",
    "Chrome OS", "HarmonyOS", "FreeBSD", "OpenBSD", "Windows Phone",
})  # fmt: skip
OTHER = "Other"
#: Control characters (C0, DEL and C1) never kept in a user agent.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _named(family: str, major: str | None, known: frozenset[str]) -> str:
    if family not in known:
        return OTHER
    version = major if major and major.isdigit() and len(major) <= 5 else None
    return f"{family} {version}" if version else family


@lru_cache(maxsize=1024)
def describe_user_agent(user_agent: str) -> tuple[str, str]:
    """("Chrome 131", "Windows 10") for a user agent string: families from a fixed list
    and a version of digits, "Other" for anything else."""
    parsed = ua_parser.parse(user_agent).with_defaults()
    browser = _named(parsed.user_agent.family, parsed.user_agent.major, KNOWN_BROWSERS)
    os_name = _named(parsed.os.family, parsed.os.major, KNOWN_SYSTEMS)
    return browser, os_name


def clean_user_agent(text: str) -> str:
    """A user agent as it is stored and shown: no control characters, cut short."""
    return _CONTROLS.sub("", text)[:MAX_USER_AGENT_CHARS]


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path="/", secure=request.is_secure, httponly=True, samesite="Lax")


def client_ip(request: Request) -> str:
    """The caller's address: the one ProxyFix took from X-Forwarded-For when that is an IP
    address, else the socket's (a proxy passes on whatever text the client sent)."""
    for candidate in (
        request.remote_addr,
        request.environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR"),
    ):
        try:
            return canonical_ip((candidate or "").strip())
        except ValueError:
            continue
    return "-"


def canonical_ip(text: str) -> str:
    """An IP address as ``ipaddress`` writes it, an IPv4-mapped IPv6 address
    (``::ffff:192.0.2.1``, as a dual-stack socket sees an IPv4 client) as the IPv4 address
    it carries; ValueError when ``text`` is not one.

    An IPv4 address that ``inet_pton`` takes (four decimal parts of at most 255, no
    leading zeros) is already written that way: the check costs a C call, where
    ``ipaddress`` parses in Python (about a tenth of a QR creation's own instructions)."""
    try:
        socket.inet_pton(socket.AF_INET, text)
    except OSError:
        return _parsed_ip(text)
    return text


@lru_cache(maxsize=4096)
def _parsed_ip(text: str) -> str:
    return str(unmapped(text))


def client_group(request: Request) -> str:
    """Who counts as one client for per-address limits and caps: the IPv4 address, or
    the IPv6 network of ``QRLOGIN_IPV6_PREFIX`` bits (64: a home or an office gets a /64
    and chooses its addresses in it at will)."""
    return address_group(client_ip(request), services().settings.ipv6_prefix)


@lru_cache(maxsize=4096)
def address_group(ip: str, ipv6_prefix: int) -> str:
    if ":" not in ip:
        return ip
    return str(ipaddress.ip_network(f"{ip}/{ipv6_prefix}", strict=False))


def client_socket(request: Request) -> socket.socket | None:
    """The connection to the caller, when the server hands it over (gunicorn does)."""
    found = request.environ.get("gunicorn.socket")
    return found if isinstance(found, socket.socket) else None


def actor(request: Request) -> Actor:
    """Who is calling, for the audit trail."""
    return Actor(client_ip(request), clean_user_agent(request.headers.get("User-Agent", "")))


def requester(request: Request) -> Requester:
    """The requesting browser's context, as the phone will be shown it."""
    caller = actor(request)
    browser, os_name = describe_user_agent(caller.user_agent)
    return Requester(caller.ip, caller.user_agent, browser, os_name)
