"""The OpenID Connect provider's protocol, on Authlib: the authorization code grant
with PKCE and OpenID Connect's ID token, RP-initiated logout, and the records behind
them in Redis (a code lives 60 s and is spent once; an access token lives an hour and
only while its session is active). Every secret is kept by its hash."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import InvalidRequestError, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.models import AuthorizationCodeMixin
from authlib.oidc.rpinitiated import EndSessionEndpoint
from flask import Flask, g, request
from joserfc.jwk import KeySet

from qrlogin.keys import Keys
from qrlogin.oidc.clients import Client, Registry
from qrlogin.oidc.signing import ID_TOKEN_TTL_S, SigningKeys

#: How long an authorization code lives (seconds).
CODE_TTL_S = 60
#: How long an access token lives (seconds), at most: it ends with its session.
ACCESS_TOKEN_TTL_S = 3600
#: How long a spent code is remembered, so that its replay revokes what it gave (seconds).
SPENT_TTL_S = 600
#: How the user authenticated (RFC 8176's ``amr``): a QR code confirmed on a phone
#: that was signed in.
AMR = ["qr"]
EXTENSION = "qrlogin-oidc"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Person:
    """Who signed in, as the provider hands them to Authlib."""

    sub: str
    name: str
    picture: str | None
    sid: str
    auth_time: int

    def get_user_id(self) -> str:
        return self.sub


@dataclass(frozen=True)
class Code(AuthorizationCodeMixin):  # type: ignore[misc]
    """An authorization code's record."""

    client_id: str
    redirect_uri: str
    scope: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    person: Person

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.person.auth_time

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> list[str]:
        return AMR

    def to_json(self) -> str:
        fields = {k: v for k, v in self.__dict__.items() if k != "person"}
        return json.dumps({**fields, "person": self.person.__dict__})

    @classmethod
    def from_json(cls, text: str) -> Code:
        data = json.loads(text)
        return cls(**{**data, "person": Person(**data["person"])})


def issuer() -> str:
    """The provider's issuer: the public origin when set, else the request's own
    (through the trusted proxies)."""
    from qrlogin.services import services

    return services().settings.public_origin or request.host_url.rstrip("/")


class Records:
    """Codes, access tokens and nonces in Redis, each under its hash."""

    def __init__(self, client: redis.Redis) -> None:
        self.redis = client

    def save_code(self, code: str, record: Code) -> None:
        self.redis.set(Keys.oidc("code", digest(code)), record.to_json(), ex=CODE_TTL_S)
        if record.nonce:
            self.redis.set(self._nonce(record.client_id, record.nonce), "1", ex=ID_TOKEN_TTL_S)

    def spend_code(self, code: str) -> Code | None:
        """The code's record, which no later call gets (GETDEL); a code spent before
        revokes the access token it gave."""
        key = Keys.oidc("code", digest(code))
        text = self.redis.getdel(key)
        if text is None:
            given = self.redis.getdel(Keys.oidc("spent", digest(code)))
            if given:
                self.redis.delete(Keys.oidc("token", str(given)))
            return None
        return Code.from_json(str(text))

    def mark_spent(self, code: str, access_token: str) -> None:
        self.redis.set(Keys.oidc("spent", digest(code)), digest(access_token), ex=SPENT_TTL_S)

    def nonce_seen(self, client_id: str, nonce: str) -> bool:
        return bool(self.redis.exists(self._nonce(client_id, nonce)))

    @staticmethod
    def _nonce(client_id: str, nonce: str) -> str:
        return Keys.oidc("nonce", digest(f"{client_id}\n{nonce}"))

    def save_access_token(self, token: str, person: Person) -> None:
        self.redis.set(
            Keys.oidc("token", digest(token)), json.dumps(person.__dict__), ex=ACCESS_TOKEN_TTL_S
        )

    def access_token(self, token: str) -> Person | None:
        """Who the access token speaks for, while it lives."""
        text = self.redis.get(Keys.oidc("token", digest(token)))
        return None if text is None else Person(**json.loads(str(text)))


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE with S256 only (``plain`` is refused), and required of public clients."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]  # noqa: RUF012 (Authlib's attribute)
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if grant.request.client.public and not data.get("code_challenge"):
            raise InvalidRequestError("a public client must send a PKCE code_challenge (S256)")
        if data.get("code_challenge") and data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


def init_app(
    app: Flask,
    registry: Registry,
    keys: SigningKeys,
    records: Records,
    on_token: Callable[[str, str, str, str], None],
) -> AuthorizationServer:
    """Authlib's server for ``app``, with the grant, its extensions and the end-session
    endpoint; kept in ``app.extensions``."""

    class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
        TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]  # noqa: RUF012

        def save_authorization_code(self, code: str, req: Any) -> None:
            data = req.payload.data
            records.save_code(code, Code(
                client_id=req.client.client_id, redirect_uri=req.payload.redirect_uri,
                scope=req.payload.scope or "openid", nonce=data.get("nonce"),
                code_challenge=data.get("code_challenge"),
                code_challenge_method=data.get("code_challenge_method"),
                person=req.user,
            ))  # fmt: skip

        def query_authorization_code(self, code: str, client: Client) -> Code | None:
            found = records.spend_code(code)
            if found is None or found.client_id != client.client_id:
                return None
            g.qrlogin_oidc_code = code
            return found

        def delete_authorization_code(self, authorization_code: Code) -> None:
            return None  # spent when read

        def authenticate_user(self, authorization_code: Code) -> Person:
            return authorization_code.person

    class IdToken(OpenIDCode):  # type: ignore[misc]
        def exists_nonce(self, nonce: str, req: Any) -> bool:
            return records.nonce_seen(req.payload.client_id, nonce)

        def get_client_algorithm(self, client: Client) -> str:
            return client.id_token_signed_response_alg

        def get_encode_header(self, client: Client) -> dict[str, str]:
            kid, g.qrlogin_oidc_key = keys.signing(client.id_token_signed_response_alg)
            return {"alg": client.id_token_signed_response_alg, "kid": kid, "typ": "JWT"}

        def resolve_client_private_key(self, client: Client) -> Any:
            return g.qrlogin_oidc_key

        def get_client_claims(self, client: Client) -> dict[str, Any]:
            return {"iss": issuer(), "aud": client.client_id,
                    "exp": int(time.time()) + ID_TOKEN_TTL_S}  # fmt: skip

        def get_authorization_code_claims(self, authorization_code: Code) -> dict[str, Any]:
            claims: dict[str, Any] = super().get_authorization_code_claims(authorization_code)
            return {**claims, "sid": authorization_code.person.sid}

        def generate_user_info(self, user: Person, scope: str) -> UserInfo:
            return user_info(user)

    class EndSession(EndSessionEndpoint):  # type: ignore[misc]
        def get_server_jwks(self) -> KeySet:
            return keys.verifying()

        def end_session(self, end_session_request: Any) -> None:
            return None  # the view ended the session (the hint's, or the confirmed one)

    def save_token(token: dict[str, Any], req: Any) -> None:
        person: Person = req.user
        records.save_access_token(token["access_token"], person)
        code = g.get("qrlogin_oidc_code")
        if code:
            records.mark_spent(code, token["access_token"])
        on_token(person.sub, person.sid, req.client.client_id, issuer())

    app.config.setdefault("OAUTH2_TOKEN_EXPIRES_IN", {"authorization_code": ACCESS_TOKEN_TTL_S})
    server = AuthorizationServer(app, query_client=registry.get, save_token=save_token)
    server.register_grant(CodeGrant, [S256Only(required=True), IdToken(require_nonce=False)])
    server.register_endpoint(EndSession)
    app.extensions[EXTENSION] = server
    return server


def user_info(person: Person) -> UserInfo:
    claims = {"sub": person.sub, "name": person.name}
    if person.picture:
        claims["picture"] = person.picture
    return UserInfo(claims)
