"""Every setting of the service, read from the environment, with its unit.

``Settings.from_env`` reads the service's settings; an invalid value raises
``ConfigError`` with a message naming the variable, so the process refuses to start
instead of running with a surprise. Each default is written once, on its field.
Process-level variables that belong to the server rather than to the app (``PORT``,
``WEB_CONCURRENCY``, ``PROMETHEUS_MULTIPROC_DIR``) are read where they are used:
``gunicorn.conf.py``, ``app.py`` and ``metrics.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from qrlogin.exceptions import ConfigError
from qrlogin.models import PLATFORM_RE

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
#: Secret used only in demo mode when SECRET_KEY is unset. Never for production.
DEMO_SECRET_KEY = "qrlogin-demo-secret-not-for-production"  # noqa: S105 (public on purpose)

#: Shortest accepted SECRET_KEY (``secrets.token_urlsafe(24)`` writes 32 characters), and
#: the fewest different characters in it (a random hex key of 32 has about 15).
MIN_SECRET_KEY_CHARS = 32
MIN_SECRET_DISTINCT = 10
#: Shortest accepted QRLOGIN_INTROSPECT_KEY.
MIN_SECRET_CHARS = 16
#: What sample configurations put where a secret goes (compared with the key's letters
#: and digits, lowercased): a key holding one of them was typed, not generated.
PLACEHOLDERS = (
    "yoursecret", "secretkeyhere", "changeme", "changethis", "replaceme", "placeholder",
    "notsecret", "insecure", "example", "password", "qwerty", "letmein", "0123456789",
    "abcdefghij",
)  # fmt: skip
#: How to make a key, as every refusal says.
MAKE_A_KEY = "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"

#: Said at every start of a process in demo mode.
DEMO_WARNING = (
    "\n" + "!" * 78 + "\n"
    "!! QRLOGIN_DEMO is on: the phone stand-in /m hands out user tokens to anyone, and\n"
    "!! without SECRET_KEY every token is signed with the PUBLIC demo key.\n"
    "!! NOT FOR PRODUCTION: unset QRLOGIN_DEMO and set a random SECRET_KEY.\n" + "!" * 78
)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _check_secret(key: str) -> None:
    """Refuse keys an attacker could guess: short ones, ones of few different characters,
    sample placeholders and anything holding the public demo key."""
    if DEMO_SECRET_KEY in key:
        raise ConfigError(
            "SECRET_KEY holds the public demo key: anyone can sign tokens with it. Set a long "
            f"random one ({MAKE_A_KEY}), or unset it with QRLOGIN_DEMO=1 to try the service"
        )
    if len(key) < MIN_SECRET_KEY_CHARS:
        raise ConfigError(
            f"SECRET_KEY must be at least {MIN_SECRET_KEY_CHARS} characters long: {MAKE_A_KEY}"
        )
    if len(set(key)) < MIN_SECRET_DISTINCT:
        raise ConfigError(
            f"SECRET_KEY is too weak (fewer than {MIN_SECRET_DISTINCT} different characters): "
            f"set a long random string, e.g. {MAKE_A_KEY}"
        )
    letters = re.sub(r"[^a-z0-9]", "", key.lower())
    found = next((p for p in PLACEHOLDERS if p in letters), None)
    if found is not None:
        raise ConfigError(
            f"SECRET_KEY looks like a placeholder or a typed phrase ({found!r} in it): "
            f"generate one, e.g. {MAKE_A_KEY}"
        )


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be 1 or 0 (or on/off, true/false; got {raw!r})")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name} must be a whole number (got {raw!r})") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum} (got {value})")
    return value


def _key(env: Mapping[str, str], name: str) -> str | None:
    """A service credential (the introspection key, the metrics token), when set."""
    key = env.get(name) or None
    if key is not None and (len(key) < MIN_SECRET_CHARS or len(set(key)) < MIN_SECRET_DISTINCT):
        raise ConfigError(
            f"{name} is too weak: at least {MIN_SECRET_CHARS} characters, "
            f"{MIN_SECRET_DISTINCT} of them different"
        )
    return key


def choice(env: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = env.get(name, "").strip().lower() or default
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)} (got {value!r})")
    return value


def _limit(env: Mapping[str, str], name: str, default: str) -> str:
    from limits import parse_many

    value = env.get(name, "").strip() or default
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(
            f"{name} must be a rate limit such as '60 per minute' (got {value!r})"
        ) from None
    return value


def _platforms(env: Mapping[str, str]) -> frozenset[str]:
    raw = env.get("QRLOGIN_PLATFORMS", "")
    names = [p.strip() for p in raw.split(",") if p.strip()]
    for name in names:
        if not PLATFORM_RE.match(name):
            raise ConfigError(
                f"QRLOGIN_PLATFORMS: {name!r} is not a valid platform name "
                "(1 to 32 of A-Z a-z 0-9 _ . -)"
            )
    return frozenset(names)


def _origins(env: Mapping[str, str], name: str) -> frozenset[str]:
    raw = env.get(name, "")
    origins = [o.strip().rstrip("/") for o in raw.split(",") if o.strip()]
    for origin in origins:
        if not re.match(r"^https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?\Z", origin):
            raise ConfigError(f"{name}: {origin!r} is not an origin like https://app.example.com")
    if name == "QRLOGIN_PUBLIC_ORIGIN" and len(origins) > 1:
        raise ConfigError(f"{name} is one origin, like https://login.example.com")
    return frozenset(origins)


#: Whether the Redis server's TLS certificate must verify (``rediss://`` URLs): ``none``
#: accepts any certificate, as a self-signed one without its CA file (Heroku Redis).
TLS_VERIFY = ("required", "none")
#: How log lines are written: for people, or one JSON object a line for log drains.
LOG_FORMATS = ("text", "json")


def _readable_file(env: Mapping[str, str], name: str) -> str | None:
    path = env.get(name, "").strip() or None
    if path is not None:
        try:
            with open(path, "rb"):
                pass
        except OSError as error:
            raise ConfigError(f"{name}: cannot read {path!r} ({error.strerror})") from None
    return path


#: How the service reaches Redis: one server (or a proxy in front of many), a Redis
#: Cluster through any of its nodes, or the master that Redis Sentinel names.
REDIS_MODES = ("single", "cluster", "sentinel")


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


@dataclass(frozen=True)
class Settings:
    """The service's configuration; see README.md for the table. Units: ``_s`` seconds."""

    secret_key: str
    redis_url: str | None
    demo: bool = False
    redis_mode: str = "single"
    sentinel_master: str = "mymaster"
    qr_ttl_s: int = 120
    prefix: str = "rk://scanforpclogin/"
    platforms: frozenset[str] = field(default_factory=frozenset)
    poll_interval_s: int = 2
    sse_heartbeat_s: int = 15
    number_matching: bool = False
    user_token_max_age_s: int = 30 * 24 * 3600
    login_token_max_age_s: int = 24 * 3600
    rate_limits: bool = True
    limit_create: str = "120 per minute"
    limit_steps: str = "60 per minute"
    limit_poll: str = "10 per 5 seconds"
    limit_refused: str = "60 per minute"
    max_live_qrs: int = 20
    max_held_per_qr: int = 4
    max_held_per_binding: int = 40
    max_held_per_ip: int = 2000
    max_held_per_session: int = 8
    max_held_per_user: int = 40
    trusted_proxies: int = 0
    cors_origins: frozenset[str] = field(default_factory=frozenset)
    public_origin: str | None = None
    geoip_db: str | None = None
    reveal_scanner: str = "scan"
    session_idle_s: int = 8 * 3600
    session_max_age_s: int = 24 * 3600
    introspect_key: str | None = None
    redis_tls_verify: str = "required"
    redis_ca_file: str | None = None
    redis_max_connections: int = 20
    ipv6_prefix: int = 64
    log_format: str = "text"
    hsts_max_age_s: int = 365 * 24 * 3600
    metrics_token: str | None = None

    @property
    def clustered(self) -> bool:
        return self.redis_mode == "cluster"

    @property
    def embedded(self) -> bool:
        """True when no REDIS_URL is set and the in-process engine is used."""
        return self.redis_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        default = _defaults(cls)
        demo = _bool(env, "QRLOGIN_DEMO", default["demo"])
        secret_key = env.get("SECRET_KEY", "")
        if not secret_key:
            if not demo:
                raise ConfigError(
                    f"SECRET_KEY is required (set it to a long random string, e.g. {MAKE_A_KEY}), "
                    "or set QRLOGIN_DEMO=1 to try the service locally"
                )
            secret_key = DEMO_SECRET_KEY
        else:
            _check_secret(secret_key)  # in demo mode too: a key given is a key used
        redis_url = env.get("REDIS_URL") or None
        if redis_url is not None and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                f"REDIS_URL must start with redis://, rediss:// or unix:// (got {redis_url!r})"
            )
        redis_mode = choice(env, "QRLOGIN_REDIS_MODE", default["redis_mode"], REDIS_MODES)
        if redis_mode != "single" and redis_url is None:
            raise ConfigError(
                f"QRLOGIN_REDIS_MODE={redis_mode} needs REDIS_URL to name a node (cluster) "
                "or the sentinels (sentinel: redis://host:26379,host:26379)"
            )
        if redis_mode == "sentinel":
            sentinel_addresses(redis_url or "")  # raises ConfigError when it names none
        prefix = env.get("QRLOGIN_PREFIX", default["prefix"])
        if not prefix or len(prefix) > 200:
            raise ConfigError("QRLOGIN_PREFIX must be 1 to 200 characters long")
        return cls(
            secret_key=secret_key,
            redis_url=redis_url,
            redis_mode=redis_mode,
            sentinel_master=env.get("QRLOGIN_SENTINEL_MASTER", "").strip()
            or default["sentinel_master"],
            demo=demo,
            qr_ttl_s=_int(env, "QRLOGIN_QR_TTL", default["qr_ttl_s"], 1, 3600),
            prefix=prefix,
            platforms=_platforms(env),
            poll_interval_s=_int(env, "QRLOGIN_POLL_INTERVAL", default["poll_interval_s"], 1, 60),
            sse_heartbeat_s=_int(env, "QRLOGIN_SSE_HEARTBEAT", default["sse_heartbeat_s"], 1, 50),
            number_matching=_bool(env, "QRLOGIN_NUMBER_MATCHING", default["number_matching"]),
            user_token_max_age_s=_int(
                env,
                "QRLOGIN_USER_TOKEN_MAX_AGE",
                default["user_token_max_age_s"],
                60,
                10 * 365 * 24 * 3600,
            ),
            login_token_max_age_s=_int(
                env,
                "QRLOGIN_LOGIN_TOKEN_MAX_AGE",
                default["login_token_max_age_s"],
                60,
                365 * 24 * 3600,
            ),
            rate_limits=_bool(env, "QRLOGIN_RATE_LIMITS", default["rate_limits"]),
            limit_create=_limit(env, "QRLOGIN_LIMIT_CREATE", default["limit_create"]),
            limit_steps=_limit(env, "QRLOGIN_LIMIT_STEPS", default["limit_steps"]),
            limit_poll=_limit(env, "QRLOGIN_LIMIT_POLL", default["limit_poll"]),
            limit_refused=_limit(env, "QRLOGIN_LIMIT_REFUSED", default["limit_refused"]),
            max_live_qrs=_int(env, "QRLOGIN_MAX_LIVE_QRS", default["max_live_qrs"], 1, 10000),
            max_held_per_qr=_int(
                env, "QRLOGIN_MAX_HELD_PER_QR", default["max_held_per_qr"], 1, 1000
            ),
            max_held_per_binding=_int(
                env, "QRLOGIN_MAX_HELD_PER_BROWSER", default["max_held_per_binding"], 1, 100_000
            ),
            max_held_per_ip=_int(
                env, "QRLOGIN_MAX_HELD_PER_IP", default["max_held_per_ip"], 1, 1_000_000
            ),
            max_held_per_session=_int(
                env, "QRLOGIN_MAX_HELD_PER_SESSION", default["max_held_per_session"], 1, 10_000
            ),
            max_held_per_user=_int(
                env, "QRLOGIN_MAX_HELD_PER_USER", default["max_held_per_user"], 1, 100_000
            ),
            cors_origins=_origins(env, "QRLOGIN_CORS_ORIGINS"),
            public_origin=next(iter(_origins(env, "QRLOGIN_PUBLIC_ORIGIN")), None),
            geoip_db=env.get("QRLOGIN_GEOIP_DB") or None,
            session_idle_s=_int(
                env, "QRLOGIN_SESSION_IDLE", default["session_idle_s"], 1, 365 * 24 * 3600
            ),
            session_max_age_s=_int(
                env, "QRLOGIN_SESSION_MAX_AGE", default["session_max_age_s"], 1, 365 * 24 * 3600
            ),
            introspect_key=_key(env, "QRLOGIN_INTROSPECT_KEY"),
            metrics_token=_key(env, "QRLOGIN_METRICS_TOKEN"),
            reveal_scanner=choice(
                env, "QRLOGIN_REVEAL_SCANNER", default["reveal_scanner"], ("scan", "confirm")
            ),
            trusted_proxies=_int(env, "QRLOGIN_TRUSTED_PROXIES", default["trusted_proxies"], 0, 10),
            redis_tls_verify=choice(
                env, "QRLOGIN_REDIS_TLS_VERIFY", default["redis_tls_verify"], TLS_VERIFY
            ),
            redis_ca_file=_readable_file(env, "QRLOGIN_REDIS_CA_FILE"),
            redis_max_connections=_int(
                env, "QRLOGIN_REDIS_MAX_CONNECTIONS", default["redis_max_connections"], 2, 1000
            ),
            ipv6_prefix=_int(env, "QRLOGIN_IPV6_PREFIX", default["ipv6_prefix"], 32, 128),
            log_format=choice(env, "QRLOGIN_LOG_FORMAT", default["log_format"], LOG_FORMATS),
            hsts_max_age_s=_int(
                env, "QRLOGIN_HSTS_MAX_AGE", default["hsts_max_age_s"], 0, 2 * 365 * 24 * 3600
            ),
        )


def _defaults(cls: type[Settings]) -> dict[str, Any]:
    """Each field's default, as written on the field."""
    return {f.name: f.default for f in fields(cls)}
