"""The relying parties the provider serves, registered by configuration
(``QRLOGIN_OIDC_CLIENTS``: a JSON list, or the path of a file holding one)."""

from __future__ import annotations

import hmac
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import ClientMixin

from qrlogin.exceptions import ConfigError

#: The scopes a client may ask for; ``profile`` brings ``name`` and ``picture``.
SCOPES = ("openid", "profile")
#: The ID token's signing algorithms; a client picks one (RS256 when it says nothing).
ALGORITHMS = ("RS256", "ES256")
CLIENT_ID_RE = re.compile(r"[A-Za-z0-9._~-]{1,128}\Z")
#: A client secret's least length (characters).
MIN_SECRET_CHARS = 24
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
#: A native app's own scheme (RFC 8252 7.1): a reversed domain name, such as com.example.app.
PRIVATE_SCHEME_RE = re.compile(r"[a-z][a-z0-9+-]*(\.[a-z0-9+-]+)+\Z")


@dataclass(frozen=True)
class Client(ClientMixin):  # type: ignore[misc]
    """One relying party. ``client_secret`` is None for a public client (a single-page
    or native app), which must use PKCE."""

    client_id: str
    redirect_uris: tuple[str, ...]
    client_secret: str | None = None
    backchannel_logout_uri: str | None = None
    post_logout_redirect_uris: tuple[str, ...] = ()
    id_token_signed_response_alg: str = "RS256"  # noqa: S105 (an algorithm's name)
    name: str = ""

    @property
    def public(self) -> bool:
        return self.client_secret is None

    @property
    def shown_name(self) -> str:
        return self.name or self.client_id

    @property
    def client_metadata(self) -> dict[str, Any]:
        return {"post_logout_redirect_uris": list(self.post_logout_redirect_uris)}

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in SCOPES)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match, nothing looser

    def check_client_secret(self, client_secret: str) -> bool:
        return self.client_secret is not None and hmac.compare_digest(
            self.client_secret.encode(), client_secret.encode()
        )

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"

    def to_json(self) -> dict[str, Any]:
        """The client as its entry in the list: unset fields left out."""
        entry = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {k: v for k, v in entry.items() if v not in (None, "", [])}


@dataclass(frozen=True)
class Registry:
    """The registered clients, by id."""

    clients: dict[str, Client] = field(default_factory=dict)

    def get(self, client_id: str | None) -> Client | None:
        return self.clients.get(client_id or "")

    def __iter__(self) -> Any:
        return iter(self.clients.values())

    def __len__(self) -> int:
        return len(self.clients)


def check_redirect_uri(uri: Any, what: str) -> str:
    """A redirect URI a client may register: https, http only to a loopback host, or a
    native app's reversed-domain scheme (RFC 8252); never a fragment."""
    if not isinstance(uri, str) or not 1 <= len(uri) <= 2000:
        raise ConfigError(f"{what} must be a URI of 1 to 2000 characters")
    parts = urlsplit(uri)
    https = parts.scheme == "https" and parts.hostname
    loopback = parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
    native = PRIVATE_SCHEME_RE.match(parts.scheme) is not None
    if parts.fragment or not (https or loopback or native):
        raise ConfigError(
            f"{what}: {uri!r} must be https://, http:// to 127.0.0.1, [::1] or localhost "
            "(RFC 8252), or an app's reversed-domain scheme, without a fragment"
        )
    return uri


def _uris(entry: dict[str, Any], key: str, what: str, *, required: bool) -> tuple[str, ...]:
    value = entry.get(key, [])
    if not isinstance(value, list) or (required and not value):
        raise ConfigError(
            f"{what}: {key} must be a list of URIs" + (", not empty" if required else "")
        )
    return tuple(check_redirect_uri(uri, f"{what}: {key}") for uri in value)


def client_of(entry: Any, index: int) -> Client:
    """One entry of the list, checked; ``ConfigError`` naming what is wrong."""
    what = f"QRLOGIN_OIDC_CLIENTS[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(f"{what} must be an object")
    known = {"client_id", "client_secret", "redirect_uris", "backchannel_logout_uri",
             "post_logout_redirect_uris", "id_token_signed_response_alg", "name"}  # fmt: skip
    if unknown := sorted(set(entry) - known):
        raise ConfigError(f"{what}: unknown field(s) {', '.join(unknown)}")
    client_id = entry.get("client_id")
    if not isinstance(client_id, str) or not CLIENT_ID_RE.match(client_id):
        raise ConfigError(f"{what}: client_id must be 1 to 128 of A-Z a-z 0-9 . _ ~ -")
    what = f"QRLOGIN_OIDC_CLIENTS ({client_id})"
    secret = entry.get("client_secret")
    if secret is not None and (not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS):
        raise ConfigError(f"{what}: client_secret must be at least {MIN_SECRET_CHARS} characters")
    backchannel = entry.get("backchannel_logout_uri")
    if backchannel is not None:
        check_redirect_uri(backchannel, f"{what}: backchannel_logout_uri")
        if not backchannel.startswith(("https://", "http://")):
            raise ConfigError(f"{what}: backchannel_logout_uri must be an http(s) URI")
    alg = entry.get("id_token_signed_response_alg", "RS256")
    if alg not in ALGORITHMS:
        raise ConfigError(f"{what}: id_token_signed_response_alg must be one of {ALGORITHMS}")
    name = entry.get("name", "")
    if not isinstance(name, str) or len(name) > 100:
        raise ConfigError(f"{what}: name must be text of at most 100 characters")
    return Client(
        client_id=client_id,
        redirect_uris=_uris(entry, "redirect_uris", what, required=True),
        client_secret=secret,
        backchannel_logout_uri=backchannel,
        post_logout_redirect_uris=_uris(entry, "post_logout_redirect_uris", what, required=False),
        id_token_signed_response_alg=alg,
        name=name,
    )


def entries(raw: str | None) -> list[Any]:
    """The JSON list ``raw`` holds, or the one in the file it names."""
    text = (raw or "").strip()
    if not text:
        return []
    if not text.startswith("["):
        try:
            text = Path(text).read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"QRLOGIN_OIDC_CLIENTS: cannot read {text!r} ({error.strerror})"
            ) from None
    try:
        found = json.loads(text)
    except ValueError as error:
        raise ConfigError(f"QRLOGIN_OIDC_CLIENTS is not valid JSON ({error})") from None
    if not isinstance(found, list):
        raise ConfigError("QRLOGIN_OIDC_CLIENTS must be a JSON list of clients")
    return found


def parse(raw: str | None, _name: str = "QRLOGIN_OIDC_CLIENTS") -> Registry:
    """The registry the setting describes; ``ConfigError`` when any entry is invalid."""
    return registry_of(client_of(entry, i) for i, entry in enumerate(entries(raw)))


def registry_of(clients: Iterable[Client]) -> Registry:
    found: dict[str, Client] = {}
    for client in clients:
        if client.client_id in found:
            raise ConfigError(
                f"QRLOGIN_OIDC_CLIENTS: client_id {client.client_id!r} is there twice"
            )
        found[client.client_id] = client
    return Registry(found)


def new_client(
    name: str,
    redirect_uris: Iterable[str],
    *,
    public: bool = False,
    backchannel_logout_uri: str | None = None,
    post_logout_redirect_uris: Iterable[str] = (),
    alg: str = "RS256",
) -> Client:
    """A client with a fresh id (and secret, unless public), checked as a listed one is."""
    entry: dict[str, Any] = {
        "client_id": secrets.token_urlsafe(12),
        "name": name,
        "redirect_uris": list(redirect_uris),
        "post_logout_redirect_uris": list(post_logout_redirect_uris),
        "id_token_signed_response_alg": alg,
    }
    if not public:
        entry["client_secret"] = secrets.token_urlsafe(32)
    if backchannel_logout_uri:
        entry["backchannel_logout_uri"] = backchannel_logout_uri
    return client_of(entry, 0)
