"""Every setting of the service in one table: name, type, default, unit, meaning.

``qrlogin.config`` parses the environment by this table, the service's settings and
gunicorn's (``server=True``) alike, and README.md's table is made from it:
``python -m qrlogin.settings`` prints it (a test checks that README.md has it as it is).
"""

from __future__ import annotations

import enum
import sys
from dataclasses import dataclass


class Kind(enum.Enum):
    """How a setting's text is read, and what the table calls it."""

    INT = "whole number"
    BOOL = "on/off"
    TEXT = "text"
    CHOICE = "one of"
    RATE = "rate limit"
    SECRET = "secret"  # noqa: S105 (the name of a kind)
    SECRETS = "comma list of secrets"
    CREDENTIAL = "credential"
    REDIS_URL = "URL"
    JWKS_URL = "HTTPS URL"
    FILE = "readable file"
    PATH = "file path"
    PLATFORMS = "comma list of names"
    ORIGINS = "comma list of origins"
    ORIGIN = "origin"
    CLIENTS = "JSON list, or a file of it"


INT, BOOL, TEXT, CHOICE, RATE = Kind.INT, Kind.BOOL, Kind.TEXT, Kind.CHOICE, Kind.RATE
SECRET, SECRETS, CREDENTIAL, REDIS_URL, FILE, PATH = (
    Kind.SECRET, Kind.SECRETS, Kind.CREDENTIAL, Kind.REDIS_URL, Kind.FILE, Kind.PATH,
)  # fmt: skip
JWKS_URL = Kind.JWKS_URL
PLATFORMS, ORIGINS, ORIGIN = Kind.PLATFORMS, Kind.ORIGINS, Kind.ORIGIN


@dataclass(frozen=True)
class Setting:
    """One environment variable: the field it sets (on ``Settings``, or on
    ``ServerSettings`` with ``server``), its kind, its default (None: unset), its unit,
    its bounds (numbers, lengths of text) or choices, and what it does. ``shown`` is how
    the table shows a default of None."""

    name: str
    field: str
    kind: Kind
    default: int | bool | str | None
    unit: str = ""
    limits: tuple[int, int] | tuple[str, ...] = ()
    shown: str = ""
    server: bool = False
    meaning: str = ""

    def default_text(self) -> str:
        if self.default is None or self.default == "":
            return self.shown
        if isinstance(self.default, bool):
            return "on" if self.default else "off"
        if isinstance(self.default, int) and self.unit == "s" and self.default >= 3600:
            days, hours = divmod(self.default // 3600, 24)
            spoken = f"{days} days" if days and not hours else f"{self.default // 3600} h"
            return f"{self.default} ({spoken})"
        return f"{self.default}" if isinstance(self.default, int) else f"`{self.default}`"

    def type_text(self) -> str:
        if self.kind is INT:
            low, high = self.limits
            return f"{self.kind.value}, {low} to {high}"
        if self.kind is CHOICE:
            return f"one of {', '.join(f'`{c}`' for c in self.limits)}"
        return self.kind.value


TABLE: tuple[Setting, ...] = (
    Setting("SECRET_KEY", "secret_key", SECRET, None, shown="required unless demo",
            meaning="signs tokens and binding cookies; shared with the main app. Make one with "
                    "`python3 -c 'import secrets; print(secrets.token_urlsafe(48))'`. Refused at "
                    "start (in demo mode too, when one is given): under 32 characters, fewer than "
                    "10 different ones, a sample placeholder (`your-secret-key-here`, "
                    "`changeme`, a "
                    "run of digits ...) or anything holding the public demo key"),
    Setting("SECRET_KEY_FALLBACKS", "secret_key_fallbacks", SECRETS, None, shown="unset: none",
            meaning="comma-separated older keys, still accepted while what they signed ages out "
                    "(user and login tokens, binding cookies); everything new is signed with "
                    "`SECRET_KEY`. To rotate: the old key here, a new `SECRET_KEY`; drop the old "
                    "one after the longest token lifetime. Each is checked as `SECRET_KEY` is"),
    Setting("REDIS_URL", "redis_url", REDIS_URL, None, shown="unset: the embedded engine",
            meaning="`redis://`, `rediss://` or `unix://` URL (Redis 7 or later)"),
    Setting("QRLOGIN_REDIS_TLS_VERIFY", "redis_tls_verify", CHOICE, "required",
            limits=("required", "none"),
            meaning="with `rediss://`: `none` accepts a certificate that cannot be verified "
                    "(Heroku Redis's is self-signed, with no CA file to give); every connection "
                    "follows it"),
    Setting("QRLOGIN_REDIS_CA_FILE", "redis_ca_file", FILE, None, shown="unset: the system's CAs",
            meaning="with `rediss://`: the CA (PEM file) that signed Redis's certificate"),
    Setting("QRLOGIN_REDIS_MAX_CONNECTIONS", "redis_max_connections", INT, 20,
            unit="connections", limits=(2, 1000),
            meaning='command connections per process (per master on a cluster); see "Redis '
                    'connections: the budget"'),
    Setting("QRLOGIN_REDIS_MODE", "redis_mode", CHOICE, "single",
            limits=("single", "cluster", "sentinel"),
            meaning="`cluster`: `REDIS_URL` names any node of a Redis Cluster; `sentinel`: "
                    "`REDIS_URL` names the sentinels, `redis://host:26379,host:26379` (see "
                    "Deploying)"),
    Setting("QRLOGIN_SENTINEL_MASTER", "sentinel_master", TEXT, "mymaster", limits=(1, 200),
            meaning="with `sentinel`: the name the sentinels know the master by"),
    Setting("PORT", "port", INT, 8000, limits=(1, 65535), server=True,
            meaning="port to listen on (5000 under `python app.py`)"),
    Setting("HOST", "host", TEXT, "127.0.0.1", limits=(1, 255), server=True,
            meaning="`python app.py` only: the address it listens on (gunicorn: `PORT`, or "
                    "`GUNICORN_CMD_ARGS=\"--bind ...\"`)"),
    Setting("WEB_CONCURRENCY", "workers", INT, 2, unit="processes", limits=(1, 256), server=True,
            meaning="gunicorn worker processes"),
    Setting("QRLOGIN_QR_TTL", "qr_ttl_s", INT, 120, unit="s", limits=(1, 3600),
            meaning="QR lifetime"),
    Setting("QRLOGIN_PREFIX", "prefix", TEXT, "rk://scanforpclogin/", limits=(1, 200),
            meaning="`prefix` in the QR text"),
    Setting("QRLOGIN_PLATFORMS", "platforms", PLATFORMS, None, shown="unset: any valid name",
            meaning="comma-separated allow-list of `platform` values"),
    Setting("QRLOGIN_POLL_INTERVAL", "poll_interval_s", INT, 2, unit="s", limits=(1, 60),
            meaning="`interval` told to polling browsers"),
    Setting("QRLOGIN_SSE_HEARTBEAT", "sse_heartbeat_s", INT, 15, unit="s", limits=(1, 50),
            meaning="`: ping` comment interval on streams"),
    Setting("QRLOGIN_NUMBER_MATCHING", "number_matching", BOOL, False,
            meaning="1: the phone must type the 2-digit code the browser shows"),
    Setting("QRLOGIN_DEMO", "demo", BOOL, False,
            meaning="demo mode: no `SECRET_KEY` needed (a public demo key is used)"),
    Setting("QRLOGIN_USER_TOKEN_MAX_AGE", "user_token_max_age_s", INT, 2592000,
            unit="s", limits=(60, 315360000),
            meaning="user token lifetime"),
    Setting("QRLOGIN_LOGIN_TOKEN_MAX_AGE", "login_token_max_age_s", INT, 86400,
            unit="s", limits=(60, 31536000),
            meaning="login token and `qrlogin_session` lifetime"),
    Setting("QRLOGIN_RATE_LIMITS", "rate_limits", BOOL, True,
            meaning="`off` turns every limit, the live-QR cap and the open-connection caps off: "
                    "load tests and benchmarks only"),
    Setting("QRLOGIN_LIMIT_CREATE", "limit_create", RATE, "120 per minute",
            meaning="QR creations per client IP"),
    Setting("QRLOGIN_LIMIT_STEPS", "limit_steps", RATE, "60 per minute",
            meaning="mobile steps per user"),
    Setting("QRLOGIN_LIMIT_POLL", "limit_poll", RATE, "10 per 5 seconds",
            meaning="one browser's polls of its own QR (a held long poll does not count)"),
    Setting("QRLOGIN_LIMIT_REFUSED", "limit_refused", RATE, "60 per minute",
            meaning="refusals an address may earn: polls of a QR not bound to the caller (403) or "
                    "of an unknown id (404), and each id the shared stream answers `gone`; past "
                    "it, "
                    "every poll and shared stream from that address gets 429. The QR's owner (its "
                    "binding) neither spends nor meets it"),
    Setting("QRLOGIN_MAX_LIVE_QRS", "max_live_qrs", INT, 20, unit="QR codes", limits=(1, 10000),
            meaning="live QR codes one browser may hold (regenerate with `code` instead)"),
    Setting("QRLOGIN_MAX_INFLIGHT", "max_inflight", INT, 64, unit="requests", limits=(0, 100000),
            meaning="requests one worker works on at once; past it a request gets 503 "
                    "`OVERLOADED` with `Retry-After` at once, instead of a late answer (a "
                    "request for new work, a QR code or an OpenID Connect sign-in page, past a "
                    "quarter of it). Streams, "
                    "a long poll's waiting and `/healthz`, `/readyz`, `/metrics` are not counted; "
                    "0 turns the bound off"),
    Setting("QRLOGIN_MAX_LAG", "max_lag_ms", INT, 10, unit="ms", limits=(0, 10000),
            meaning="when a worker's event loop runs this late on average (a 10 ms timer's "
                    "lateness, over the last few tenths of a second), requests for new work (a QR "
                    "code, an OpenID Connect sign-in page) get 503 `OVERLOADED`; the steps of "
                    "logins under way go on. 0 turns it off"),
    Setting("QRLOGIN_MAX_SLOWDOWN", "max_slowdown", INT, 2, unit="times", limits=(0, 100),
            meaning="how much slower than its fastest lately a worker may answer before it "
                    "takes on less new work: a tenth of a second is slow when the time within "
                    "which nine in ten of its answers were given (ninety-nine in a hundred "
                    "while it refuses new work) is more than this many times the fastest "
                    "such time, and the worker was busy (its loop ran for a quarter of that "
                    "tenth or more). Under a flood (more new work asked than twice the "
                    "pace) each slow tenth cuts the pace, and while its answers stay fast and "
                    "new work is refused, the pace rises again by 5 % each tenth of a second; "
                    "under a calm load it climbs to twice the new work asked, and two slow "
                    "tenths in a row cut it. Requests for new work (a QR code, an OpenID "
                    "Connect sign-in page) past the pace get 503 `OVERLOADED`. It starts at 25 "
                    "a second per worker, and so does each flood, four at once (two at once "
                    "while it refuses). 0 turns it off"),
    Setting("QRLOGIN_MAX_HELD_PER_QR", "max_held_per_qr", INT, 4,
            unit="connections", limits=(1, 1000),
            meaning="open connections (SSE streams and held long polls) on one QR, per worker "
                    "process"),
    Setting("QRLOGIN_MAX_HELD_PER_BROWSER", "max_held_per_binding", INT, 40,
            unit="connections", limits=(1, 100000),
            meaning="open connections of one browser binding, per worker process (20 live QRs, two "
                    "each)"),
    Setting("QRLOGIN_MAX_HELD_PER_IP", "max_held_per_ip", INT, 2000,
            unit="connections", limits=(1, 1000000),
            meaning="open connections from one address (QR, session and notice streams, held long "
                    "polls), per worker process: an office behind one NAT address fits, one client "
                    "cannot take a worker's 12,000"),
    Setting("QRLOGIN_MAX_HELD_PER_SESSION", "max_held_per_session", INT, 8,
            unit="connections", limits=(1, 10000),
            meaning="open session streams of one login session, per worker process (tabs that do "
                    "not share one stream each hold one)"),
    Setting("QRLOGIN_MAX_HELD_PER_USER", "max_held_per_user", INT, 40,
            unit="connections", limits=(1, 100000),
            meaning="open session and notice streams of one user, per worker process"),
    Setting("QRLOGIN_GEOIP_DB", "geoip_db", PATH, None, shown="unset: the shipped country data",
            meaning="path to a MaxMind-format database (GeoLite2-City, DB-IP City Lite, ...) for "
                    "the requester's country and city"),
    Setting("QRLOGIN_SESSION_IDLE", "session_idle_s", INT, 28800, unit="s", limits=(1, 31536000),
            meaning="a session ends after this long without use"),
    Setting("QRLOGIN_SESSION_MAX_AGE", "session_max_age_s", INT, 86400,
            unit="s", limits=(1, 31536000),
            meaning="a session ends this long after it began"),
    Setting("QRLOGIN_INTROSPECT_KEY", "introspect_key", CREDENTIAL, None,
            shown="unset: introspection off",
            meaning="the main application's credential for `/v1/passport/introspect`"),
    Setting("QRLOGIN_USER_JWT_KEY", "user_jwt_key", SECRET, None, shown="unset: off",
            meaning="the main application's HS256 key for user tokens that are JWTs, checked as "
                    "`SECRET_KEY` is: such tokens are accepted besides `SECRET_KEY`'s"),
    Setting("QRLOGIN_USER_JWKS_URL", "user_jwks_url", JWKS_URL, None, shown="unset: off",
            meaning="the main application's JWKS: user tokens that are JWTs signed RS256, ES256 "
                    "or EdDSA with one of its keys are accepted. Kept, and fetched again for a "
                    "key it does not have (`https://`; `http://` only to a loopback address)"),
    Setting("QRLOGIN_USER_JWT_ISSUER", "user_jwt_issuer", TEXT, "", limits=(0, 500),
            shown="unset: any", meaning="when set, a JWT user token's `iss` must be this"),
    Setting("QRLOGIN_USER_JWT_AUDIENCE", "user_jwt_audience", TEXT, "", limits=(0, 500),
            shown="unset: any", meaning="when set, a JWT user token's `aud` must hold this"),
    Setting("QRLOGIN_OIDC_CLIENTS", "oidc_clients", Kind.CLIENTS, None, shown="unset: none",
            meaning="the OpenID Connect relying parties: objects with `client_id`, `client_secret` "
                    "(none for a public client), `redirect_uris`, and optionally "
                    "`backchannel_logout_uri`, `post_logout_redirect_uris`, "
                    "`id_token_signed_response_alg` (`RS256`, `ES256`) and `name`; `flask --app "
                    "wsgi clients add` writes one"),
    Setting("QRLOGIN_OIDC_KEY_ROTATION", "oidc_key_rotation_s", INT, 2592000, unit="s",
            limits=(3600, 31536000),
            meaning="the provider's signing keys are replaced this often (the old ones stay "
                    "published until the ID tokens they signed expire)"),
    Setting("QRLOGIN_REVEAL_SCANNER", "reveal_scanner", CHOICE, "scan", limits=("scan", "confirm"),
            meaning="`confirm`: the browser sees the scanner's name and avatar only once the login "
                    "is confirmed"),
    Setting("QRLOGIN_CORS_ORIGINS", "cors_origins", ORIGINS, None, shown="unset: none",
            meaning="comma list of other origins whose pages may call the API with credentials"),
    Setting("QRLOGIN_TRUSTED_PROXIES", "trusted_proxies", INT, 0, unit="proxies", limits=(0, 10),
            meaning="proxies in front that set `X-Forwarded-For` (1 on Heroku, 1 behind one "
                    "nginx); "
                    "the client IP, and from the last proxy `X-Forwarded-Proto`, `-Host` and "
                    "`-Port`. With 0 every forwarded header is ignored, gunicorn's own reading of "
                    "them included, and the first request that carries them is reported in the log "
                    "and in `/readyz`"),
    Setting("QRLOGIN_PUBLIC_ORIGIN", "public_origin", ORIGIN, None, shown="unset",
            meaning="the origin browsers see (`https://login.example.com`), accepted by the Origin "
                    "check whatever Host the proxy sends; alone it gives up the browser's address "
                    '(see "Behind nginx")'),
    Setting("QRLOGIN_IPV6_PREFIX", "ipv6_prefix", INT, 64, unit="bits", limits=(32, 128),
            meaning="IPv6 clients count by this network for per-address limits and caps"),
    Setting("QRLOGIN_METRICS_TOKEN", "metrics_token", CREDENTIAL, None,
            shown="unset: `/metrics` open",
            meaning="a bearer token `/metrics` asks for; unset keeps it open, as Prometheus setups "
                    "on a private network expect"),
    Setting("QRLOGIN_HSTS_MAX_AGE", "hsts_max_age_s", INT, 31536000, unit="s", limits=(0, 63072000),
            meaning="`Strict-Transport-Security` max-age on HTTPS answers (no `includeSubDomains`: "
                    "the site's other hosts may serve plain HTTP); 0 leaves it out"),
    Setting("QRLOGIN_LOG_FORMAT", "log_format", CHOICE, "text", limits=("text", "json"),
            meaning="`json`: one JSON object a line (gunicorn's lines too), for log drains; every "
                    "line of a request carries its `X-Request-Id`"),
    Setting("QRLOGIN_WORKER_CONNECTIONS", "worker_connections", INT, 12000,
            unit="connections", limits=(1, 1000000), server=True,
            meaning="gunicorn connections per worker: requests in progress and the streams that "
                    "keep a greenlet (parked QR streams do not count; the file-descriptor limit "
                    "bounds them)"),
    Setting("QRLOGIN_REUSE_PORT", "reuse_port", BOOL, True, server=True,
            meaning="each worker listens on a socket of its own (`SO_REUSEPORT`) and the kernel "
                    "spreads new connections over them evenly; `0` shares one socket, where the "
                    "worker that accepts first takes a burst of connections. With 1, a second "
                    "instance started on the same port by mistake shares its connections "
                    "instead of "
                    "failing to start"),
    Setting("QRLOGIN_ACCESS_LOG", "access_log", TEXT, "-", limits=(0, 4096), server=True,
            meaning="gunicorn access log; empty turns it off"),
    Setting("QRLOGIN_GC_FREEZE", "gc_freeze", BOOL, True, server=True,
            meaning="`0` leaves out `gc.freeze()` after a worker starts (it keeps what the worker "
                    "built to start out of every later full garbage collection; "
                    "`qrlogin_gc_pause_seconds` times them)"),
)  # fmt: skip

BY_NAME = {setting.name: setting for setting in TABLE}
#: Each setting's default, by its field's name.
DEFAULTS = {setting.field: setting.default for setting in TABLE}


def markdown() -> str:
    """README.md's table of the settings."""
    lines = ["| variable | type | default | unit | meaning |", "|---|---|---|---|---|"]
    for s in TABLE:
        unit = "seconds" if s.unit == "s" else s.unit
        lines.append(
            f"| `{s.name}` | {s.type_text()} | {s.default_text()} | {unit} | {s.meaning} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(markdown())
