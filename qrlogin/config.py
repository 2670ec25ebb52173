"""Every setting of the service, read from the environment by the table in
``qrlogin.settings``: ``Settings.from_env`` the service's, ``ServerSettings.from_env``
gunicorn's. An invalid value raises ``ConfigError`` naming the variable, so the process
refuses to start instead of running with a surprise. The constants below are the
service's fixed figures, each with its unit."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from qrlogin import keycheck
from qrlogin.exceptions import ConfigError
from qrlogin.models import PLATFORM_RE
from qrlogin.oidc import clients
from qrlogin.settings import BY_NAME, TABLE, Kind, Setting

#: How long a QR record is kept past its deadline, so late calls get 410, not 404 (seconds).
RETENTION_S = 600
#: Largest accepted request body (bytes).
MAX_BODY_BYTES = 16 * 1024
#: The same, as the contract's words say it.
MAX_BODY_TEXT = f"{MAX_BODY_BYTES // 1024} KiB"
#: Longest a request body may take to arrive (seconds); a request head has gunicorn's
#: keep-alive time (gunicorn.conf.py).
BODY_READ_S = 5
#: Longest long poll a browser may ask for on /v1/passport/guest (seconds).
MAX_WAIT_S = 25
#: When a QR's deadline passed by our clock but not yet by Redis', look again after (seconds).
RECHECK_S = 0.25
#: The SSE ``retry:`` hint sent to browsers (milliseconds).
SSE_RETRY_MS = 3000

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(raw: str | None, name: str, default: bool) -> bool:
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be 1 or 0 (or on/off, true/false; got {raw!r})")


def _int(raw: str | None, name: str, default: int, minimum: int, maximum: int) -> int:
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r})") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum} (got {value})")
    return value


def _choice(raw: str | None, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = (raw or "").strip().lower() or default
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")
    return value


def _limit(raw: str | None, name: str, default: str) -> str:
    from limits import parse_many

    value = (raw or "").strip() or default
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be a rate limit such as '60 per minute' (got {value!r})"
        ) from None
    return value


def _platforms(raw: str | None) -> frozenset[str]:
    names = [p.strip() for p in (raw or "").split(",") if p.strip()]
    for name in names:
        if not PLATFORM_RE.match(name):
            raise ConfigError(
                f"QRLOGIN_PLATFORMS: {name!r} is not a valid platform name "
                "(1 to 32 of A-Z a-z 0-9 _ . -)"
            )
    return frozenset(names)


def _origins(raw: str | None, name: str) -> frozenset[str]:
    origins = [o.strip().rstrip("/") for o in (raw or "").split(",") if o.strip()]
    for origin in origins:
        if not re.match(r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?\Z", origin):
            raise ConfigError(f"{name}: {origin!r} is not an origin like https://app.example.com")
    if name == "QRLOGIN_PUBLIC_ORIGIN" and len(origins) > 1:
        raise ConfigError(f"{name} is one origin, like https://login.example.com")
    return frozenset(origins)


def _readable_file(raw: str | None, name: str) -> str | None:
    path = (raw or "").strip() or None
    if path is not None:
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise ConfigError(f"{name}: cannot read {path!r} ({error.strerror})") from None
    return path


def sentinel_addresses(url: str) -> list[tuple[str, int]]:
    """The sentinels a sentinel-mode REDIS_URL names: redis://host:port[,host:port...]."""
    hosts = url.split("://", 1)[-1].rpartition("@")[2].split("/", 1)[0]
    found = []
    for part in hosts.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"REDIS_URL: {part!r} is not a sentinel's host:port")
        found.append((host, int(port)))
    return found


def _text(raw: str | None, setting: Setting) -> str:
    low, high = setting.limits
    if raw is None:
        return str(setting.default)
    if not int(low) <= len(raw) <= int(high):
        raise ConfigError(f"{setting.name} must be {low} to {high} characters long")
    return raw


def _redis_url(raw: str | None) -> str | None:
    url = raw or None
    if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix:// (got {url!r})")
    return url


def _jwks_url(raw: str | None, name: str) -> str | None:
    """An https URL, or http to a loopback address (a main application on this machine)."""
    url = (raw or "").strip() or None
    if url is None:
        return None
    parts = urlsplit(url)
    loopback = parts.hostname in clients.LOOPBACK_HOSTS
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
        raise ConfigError(f"{name} must be an https:// URL (http:// only to a loopback address)")
    return url


def read(setting: Setting, env: Mapping[str, str]) -> Any:
    """``setting``'s value in ``env``: its default when unset, ``ConfigError`` when invalid."""
    raw, name, default, kind = env.get(setting.name), setting.name, setting.default, setting.kind
    if kind is Kind.INT:
        low, high = setting.limits
        return _int(raw, name, int(default or 0), int(low), int(high))
    if kind is Kind.BOOL:
        return _bool(raw, name, bool(default))
    if kind is Kind.TEXT:
        return _text(raw, setting)
    if kind is Kind.CHOICE:
        return _choice(raw, name, str(default), tuple(str(c) for c in setting.limits))
    if kind is Kind.RATE:
        return _limit(raw, name, str(default))
    if kind is Kind.CREDENTIAL:
        return keycheck.credential(env, name)
    if kind is Kind.ORIGIN:
        return next(iter(_origins(raw, name)), None)
    if kind in _BY_RAW:
        return _BY_RAW[kind](raw, name)
    return raw or None  # PATH, and SECRET (checked by Settings.from_env)


#: The kinds read from the variable's text and name alone.
_BY_RAW: dict[Kind, Any] = {
    Kind.SECRETS: lambda raw, name: keycheck.fallback_keys(raw),
    Kind.JWKS_URL: _jwks_url,
    Kind.REDIS_URL: lambda raw, name: _redis_url(raw),
    Kind.FILE: _readable_file,
    Kind.PLATFORMS: lambda raw, name: _platforms(raw),
    Kind.ORIGINS: _origins,
    Kind.CLIENTS: lambda raw, name: clients.parse(raw),
}


def value_of(name: str, env: Mapping[str, str]) -> Any:
    """One setting's value (for what reads a setting before the app exists)."""
    return read(BY_NAME[name], env)


@dataclass(frozen=True)
class Settings:
    """The service's configuration (``qrlogin.settings`` says what each one is). Units:
    ``_s`` seconds."""

    secret_key: str
    secret_key_fallbacks: tuple[str, ...]
    redis_url: str | None
    demo: bool
    redis_mode: str
    sentinel_master: str
    qr_ttl_s: int
    prefix: str
    platforms: frozenset[str]
    poll_interval_s: int
    sse_heartbeat_s: int
    number_matching: bool
    user_token_max_age_s: int
    login_token_max_age_s: int
    rate_limits: bool
    limit_create: str
    limit_steps: str
    limit_poll: str
    limit_refused: str
    max_live_qrs: int
    max_inflight: int
    max_lag_ms: int
    max_slowdown: int
    max_held_per_qr: int
    max_held_per_binding: int
    max_held_per_ip: int
    max_held_per_session: int
    max_held_per_user: int
    trusted_proxies: int
    cors_origins: frozenset[str]
    public_origin: str | None
    geoip_db: str | None
    reveal_scanner: str
    session_idle_s: int
    session_max_age_s: int
    introspect_key: str | None
    user_jwt_key: str | None
    user_jwks_url: str | None
    user_jwt_issuer: str
    user_jwt_audience: str
    oidc_clients: clients.Registry
    oidc_key_rotation_s: int
    redis_tls_verify: str
    redis_ca_file: str | None
    redis_max_connections: int
    ipv6_prefix: int
    log_format: str
    hsts_max_age_s: int
    metrics_token: str | None

    @property
    def clustered(self) -> bool:
        return self.redis_mode == "cluster"

    @property
    def embedded(self) -> bool:
        """True when no REDIS_URL is set and the in-process engine is used."""
        return self.redis_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        values = {s.field: read(s, env) for s in TABLE if not s.server}
        if not values["secret_key"]:
            if not values["demo"]:
                raise ConfigError(
                    "SECRET_KEY is required (set it to a long random string, e.g. "
                    f"{keycheck.MAKE_A_KEY}), or set QRLOGIN_DEMO=1 to try the service locally"
                )
            values["secret_key"] = keycheck.DEMO_SECRET_KEY
        else:
            keycheck.check_secret(
                values["secret_key"]
            )  # in demo mode too: a key given is a key used
        if values["user_jwt_key"]:
            keycheck.check_secret(values["user_jwt_key"], "QRLOGIN_USER_JWT_KEY")
        mode, url = values["redis_mode"], values["redis_url"]
        if mode != "single" and url is None:
            raise ConfigError(
                f"QRLOGIN_REDIS_MODE={mode} needs REDIS_URL to name a node (cluster) "
                "or the sentinels (sentinel: redis://host:26379,host:26379)"
            )
        if mode == "sentinel":
            sentinel_addresses(url or "")  # raises ConfigError when it names none
        return cls(**values)


@dataclass(frozen=True)
class ServerSettings:
    """gunicorn's settings (``gunicorn.conf.py``), from the same table."""

    port: int
    host: str
    workers: int
    worker_connections: int
    reuse_port: bool
    access_log: str
    gc_freeze: bool

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerSettings:
        return cls(**{s.field: read(s, env) for s in TABLE if s.server})
