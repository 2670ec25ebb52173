"""User tokens that are JWTs, signed by the main application: HS256 with a shared key
(``QRLOGIN_USER_JWT_KEY``), or RS256, ES256 or EdDSA with a key of its JWKS
(``QRLOGIN_USER_JWKS_URL``). joserfc does the JOSE work; this module chooses the keys,
keeps the JWKS, and says what was wrong with a token.

The algorithm decides the key, never the other way round: an HS256 token is checked
with the shared key only, an asymmetric one with the JWKS only, so that a public key
can never serve as an HMAC secret.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.error
import urllib.request
import warnings
from typing import Any

from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidKeyCurveError,
    InvalidKeyIdError,
    InvalidKeyTypeError,
    JoseError,
    MissingClaimError,
    SecurityWarning,
)
from joserfc.jwk import KeySet, OctKey

from qrlogin.exceptions import Unauthorized
from qrlogin.models import User

log = logging.getLogger(__name__)
# RFC 9864 renames EdDSA over Ed25519 "Ed25519"; main applications still sign "EdDSA",
# which the service accepts on purpose: not a warning for every process's log.
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)

#: The asymmetric algorithms a JWKS key may sign with ("Ed25519" is RFC 9864's name for
#: EdDSA over Ed25519).
ASYMMETRIC = ("RS256", "ES256", "EdDSA", "Ed25519")
#: Clock skew allowed on ``exp``, ``nbf`` and ``iat`` (seconds).
LEEWAY_S = 30
#: How long a fetched JWKS is kept before it is fetched again (seconds), and the least
#: time between two fetches for an unknown ``kid`` (a flood of made-up kids must not
#: become a flood of requests to the main application).
JWKS_TTL_S = 300
JWKS_REFETCH_S = 10
#: Longest wait for the JWKS (seconds), and its largest accepted size (bytes).
JWKS_TIMEOUT_S = 5
JWKS_MAX_BYTES = 256 * 1024


def jose_header(token: str) -> dict[str, Any] | None:
    """The JOSE header of ``token`` when it is a JWT (its first part names an ``alg``);
    None for anything else, such as SECRET_KEY's itsdangerous tokens (whose first part
    is the payload)."""
    head = token.split(".", 1)[0]
    try:
        header = json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))
    except (ValueError, TypeError):
        return None
    return header if isinstance(header, dict) and "alg" in header else None


class Jwks:
    """The main application's JWKS, fetched on first use, kept JWKS_TTL_S, and fetched
    again (at most every JWKS_REFETCH_S) when a token names a key it does not hold."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._keys: KeySet | None = None
        self._fetched = float("-inf")
        self._lock = threading.Lock()

    def key_set(self, kid: str | None) -> KeySet:
        now = time.monotonic()
        stale = self._keys is None or now - self._fetched > JWKS_TTL_S
        unknown = self._keys is not None and kid is not None and not _holds(self._keys, kid)
        if (stale or unknown) and now - self._fetched > JWKS_REFETCH_S:
            with self._lock:
                if time.monotonic() - self._fetched > JWKS_REFETCH_S:  # none fetched meanwhile
                    self._fetch()
        if self._keys is None:
            raise Unauthorized("the main application's keys (its JWKS) could not be fetched")
        return self._keys

    def _fetch(self) -> None:
        self._fetched = time.monotonic()
        try:
            request = urllib.request.Request(self.url, headers={"Accept": "application/json"})  # noqa: S310 (https, or http to loopback: config.py)
            with urllib.request.urlopen(request, timeout=JWKS_TIMEOUT_S) as answer:  # noqa: S310
                body = answer.read(JWKS_MAX_BYTES + 1)
            if len(body) > JWKS_MAX_BYTES:
                raise ValueError(f"larger than {JWKS_MAX_BYTES} bytes")
            self._keys = KeySet.import_key_set(json.loads(body))
        except (OSError, urllib.error.URLError, ValueError, JoseError) as error:
            log.warning("cannot fetch the JWKS at %s (%s); keeping the keys held", self.url, error)


def _holds(keys: KeySet, kid: str) -> bool:
    return any(key.kid == kid for key in keys.keys)


class UserJwt:
    """Checks JWT user tokens; its answer is the ``User``, or ``Unauthorized`` saying
    what was wrong."""

    def __init__(
        self, hs256_key: str | None, jwks_url: str | None, issuer: str = "", audience: str = ""
    ) -> None:
        self._oct = OctKey.import_key(hs256_key) if hs256_key else None
        self._jwks = Jwks(jwks_url) if jwks_url else None
        claims: dict[str, Any] = {"sub": {"essential": True}, "exp": {"essential": True}}
        if issuer:
            claims["iss"] = {"essential": True, "value": issuer}
        if audience:
            claims["aud"] = {"essential": True, "value": audience}
        self._claims = jwt.JWTClaimsRegistry(leeway=LEEWAY_S, **claims)

    @property
    def enabled(self) -> bool:
        return self._oct is not None or self._jwks is not None

    def check(self, token: str, header: dict[str, Any]) -> User:
        """Check ``token``, whose JOSE header ``jose_header`` read."""
        if not self.enabled:
            raise Unauthorized(
                "JWT user tokens are off: the service takes them with QRLOGIN_USER_JWT_KEY or "
                "QRLOGIN_USER_JWKS_URL set"
            )
        alg = header.get("alg")
        try:
            if alg == "HS256" and self._oct is not None:
                decoded = jwt.decode(token, self._oct, algorithms=["HS256"])
            elif alg in ASYMMETRIC and self._jwks is not None:
                kid = header.get("kid") if isinstance(header.get("kid"), str) else None
                decoded = jwt.decode(token, self._jwks.key_set(kid), algorithms=list(ASYMMETRIC))
            else:
                raise Unauthorized(f"the token's algorithm ({alg!r}) is not accepted here")
            self._claims.validate(decoded.claims)
        except ExpiredTokenError:
            raise Unauthorized("token has expired") from None
        except (MissingClaimError, InvalidClaimError) as error:
            raise Unauthorized(f"token's claims are not accepted: {error.description}") from None
        except BadSignatureError:
            raise Unauthorized("token's signature does not verify") from None
        except (InvalidKeyTypeError, InvalidKeyCurveError):
            raise Unauthorized("the token's algorithm does not fit the key it names") from None
        except InvalidKeyIdError:
            raise Unauthorized(
                "token is signed with an unknown key (its kid is not in the JWKS)"
            ) from None
        except JoseError as error:
            raise Unauthorized(f"token is malformed ({error.error})") from None
        return _user_of(decoded.claims)


def _user_of(claims: dict[str, Any]) -> User:
    sub, name, picture = claims.get("sub"), claims.get("name", ""), claims.get("picture")
    if not isinstance(sub, str) or not sub or not isinstance(name, str):
        raise Unauthorized("token's claims are not accepted: sub and name must be strings")
    if picture is not None and not isinstance(picture, str):
        raise Unauthorized("token's claims are not accepted: picture must be a string")
    return User(sub, name or sub, picture or None)
