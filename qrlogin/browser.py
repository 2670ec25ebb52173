"""What the service knows about the browser asking: its binding secret and its context."""

from __future__ import annotations

import secrets
from functools import lru_cache

import ua_parser
from flask import Request, Response

from qrlogin.models import Actor, Requester, bind_digest

BIND_COOKIE = "qrlogin_bind"
#: Bytes of randomness in a browser secret.
BIND_SECRET_BYTES = 32
#: The binding cookie outlives many QR codes, so a page that regenerates keeps it (seconds).
BIND_COOKIE_MAX_AGE_S = 30 * 24 * 3600
#: Longest user agent kept and shown to the phone (characters).
MAX_USER_AGENT_CHARS = 512


def browser_secret(request: Request) -> str | None:
    """The caller's browser secret from its cookie, if it looks like one of ours."""
    value = request.cookies.get(BIND_COOKIE)
    if value and 32 <= len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum():
        return value
    return None


#: Stands for "no binding": never equal to a stored digest, so such a caller owns no QR.
NO_BINDING = "-"


def bound_digest(request: Request) -> str:
    """The binding digest of the caller, or ``NO_BINDING``."""
    secret = browser_secret(request)
    return NO_BINDING if secret is None else bind_digest(secret)


def new_browser_secret() -> str:
    return secrets.token_urlsafe(BIND_SECRET_BYTES)


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


@lru_cache(maxsize=1024)
def describe_user_agent(user_agent: str) -> tuple[str, str]:
    """("Chrome 131", "Windows 10") for a user agent string; "Other" when unknown."""
    parsed = ua_parser.parse(user_agent).with_defaults()
    browser = " ".join(p for p in (parsed.user_agent.family, parsed.user_agent.major) if p)
    os_name = " ".join(p for p in (parsed.os.family, parsed.os.major) if p)
    return browser, os_name


def actor(request: Request) -> Actor:
    """Who is calling, for the audit trail; the IP is the one ProxyFix trusted."""
    return Actor(
        request.remote_addr or "", request.headers.get("User-Agent", "")[:MAX_USER_AGENT_CHARS]
    )


def requester(request: Request) -> Requester:
    """The requesting browser's context, as the phone will be shown it."""
    caller = actor(request)
    browser, os_name = describe_user_agent(caller.user_agent)
    return Requester(caller.ip, caller.user_agent, browser, os_name)
