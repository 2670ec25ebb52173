"""User tokens (mobile sign-in) and login tokens (what the browser receives).

Both are ``itsdangerous.URLSafeTimedSerializer(SECRET_KEY, salt=...)`` tokens, so
the main application can mint and check them with the same library and secret; older
keys (``SECRET_KEY_FALLBACKS``) still verify, and everything new is signed with the
current one. A user token may also be a JWT the main application signs
(``qrlogin.userjwt``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, Signer, URLSafeTimedSerializer

from qrlogin.exceptions import Unauthorized
from qrlogin.models import User
from qrlogin.userjwt import UserJwt, jose_header

USER_SALT = "qrlogin.user"
LOGIN_SALT = "qrlogin.login"
BIND_SALT = "qrlogin.bind"
#: Binding cookies whose signature check is remembered, most recently seen first.
BIND_CHECKS_KEPT = 4096
#: Longest accepted token (characters); anything longer is not one of ours.
MAX_TOKEN_CHARS = 4096


@dataclass(frozen=True)
class Login:
    """A verified login token."""

    user: User
    qr_id: str
    platform: str
    issued_at: int
    #: The session the login opened ("" in a token that names none: refused).
    sid: str


class Tokens:
    def __init__(
        self,
        secret_key: str,
        user_max_age_s: int,
        login_max_age_s: int,
        fallbacks: tuple[str, ...] = (),
        user_jwt: UserJwt | None = None,
    ) -> None:
        keys = [*fallbacks, secret_key]  # itsdangerous signs with the last, checks with all
        self._user = URLSafeTimedSerializer(keys, salt=USER_SALT)
        self._login = URLSafeTimedSerializer(keys, salt=LOGIN_SALT)
        self._bind = Signer(keys, salt=BIND_SALT)
        self._user_jwt = user_jwt or UserJwt(None, None)
        # A browser sends the same binding cookie with each of its requests; its signature
        # is checked once and the answer kept, as it cannot change while the
        # process's SECRET_KEY does not.
        self._bind_valid = functools.lru_cache(maxsize=BIND_CHECKS_KEPT)(self._bind.validate)
        self.user_max_age_s = user_max_age_s
        self.login_max_age_s = login_max_age_s

    def mint_user(self, user_id: str, name: str, avatar: str | None = None) -> str:
        payload: dict[str, Any] = {"sub": user_id, "name": name}
        if avatar:
            payload["avatar"] = avatar
        return str(self._user.dumps(payload))

    def mint_login(self, login: dict[str, Any]) -> str:
        """The login token: who logged in, from which QR and platform, and the session."""
        payload = {k: login.get(k) for k in ("sub", "name", "avatar", "qr", "platform", "sid")}
        return str(self._login.dumps(payload))

    def sign_binding(self, secret: str) -> str:
        """The binding cookie's value for a browser secret."""
        return self._bind.sign(secret).decode()

    def binding_is_ours(self, value: str) -> bool:
        """True when ``value`` is a binding cookie this service signed."""
        return bool(self._bind_valid(value))

    def binding_payload(self, value: str) -> str:
        """What a binding cookie this service signed carries."""
        return self._bind.unsign(value).decode()

    def check_user(self, token: str) -> User:
        header = jose_header(token) if 0 < len(token) <= MAX_TOKEN_CHARS else None
        if header is not None:  # a JWT (a longer token is refused below, unparsed)
            return self._user_jwt.check(token, header)
        payload, _ = self._load(self._user, token, self.user_max_age_s)
        return _user_of(payload)

    def check_login(self, token: str) -> Login:
        payload, issued = self._load(self._login, token, self.login_max_age_s)
        qr_id, platform, sid = payload.get("qr"), payload.get("platform"), payload.get("sid")
        if not isinstance(qr_id, str) or not isinstance(platform, str):
            raise Unauthorized("login token payload is malformed")
        return Login(
            _user_of(payload), qr_id, platform, issued, sid if isinstance(sid, str) else ""
        )

    @staticmethod
    def _load(
        serializer: URLSafeTimedSerializer, token: str, max_age_s: int
    ) -> tuple[dict[str, Any], int]:
        if not token:
            raise Unauthorized()
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized(f"token is longer than {MAX_TOKEN_CHARS} characters")
        try:
            payload, issued = serializer.loads(token, max_age=max_age_s, return_timestamp=True)
        except SignatureExpired:
            raise Unauthorized("token has expired") from None
        except BadSignature:
            raise Unauthorized("token is malformed or badly signed") from None
        if not isinstance(payload, dict):
            raise Unauthorized("token payload is malformed")
        return payload, int(issued.timestamp())


def _user_of(payload: dict[str, Any]) -> User:
    sub, name, avatar = payload.get("sub"), payload.get("name"), payload.get("avatar")
    if not isinstance(sub, str) or not sub or not isinstance(name, str):
        raise Unauthorized("token payload is malformed")
    if avatar is not None and not isinstance(avatar, str):
        raise Unauthorized("token payload is malformed")
    return User(sub, name, avatar or None)
