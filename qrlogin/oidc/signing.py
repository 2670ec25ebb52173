"""The provider's signing keys, kept in Redis so that every worker signs with the same
ones: an ES256 and an RS256 key, replaced on a schedule (or by ``flask keys rotate``).
A replaced key stays published in the JWKS until every token it signed has expired.

The private half is sealed (Fernet, from the cryptography package) with a key derived
from ``SECRET_KEY``, so Redis still holds nothing that signs anyone in; its fallbacks
unseal keys sealed before a rotation of ``SECRET_KEY``. A key none of them unseals is
replaced at once."""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from joserfc.jwk import ECKey, KeySet, RSAKey

from qrlogin.keys import Keys

#: How long an ID token lives (seconds); a replaced key stays published this much longer.
ID_TOKEN_TTL_S = 3600
#: How long a worker keeps the key set before reading it again (seconds).
CACHE_S = 5
#: A replaced key is published this long after its replacement (seconds): a worker may
#: sign with it until its cache is read again, and the token then lives its hour.
KEEP_S = ID_TOKEN_TTL_S + CACHE_S + 60
RSA_BITS = 2048
#: How long one worker may hold the rotation lock (seconds).
LOCK_S = 30

AnyKey = ECKey | RSAKey


def sealer(secret_keys: tuple[str, ...]) -> MultiFernet:
    """Fernet keys derived (HKDF-SHA256) from ``SECRET_KEY`` and its fallbacks, the first
    sealing."""

    def derived(secret: str) -> Fernet:
        hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"qrlogin.oidc-keys")
        return Fernet(base64.urlsafe_b64encode(hkdf.derive(secret.encode())))

    return MultiFernet([derived(secret) for secret in secret_keys])


@dataclass(frozen=True)
class Stored:
    """One key as kept: its public JWK, its sealed private JWK, and when it was made and
    replaced (0: current)."""

    kid: str
    alg: str
    public: dict[str, Any]
    sealed: str
    created: int
    retired: int

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> Stored:
        return cls(**json.loads(text))

    def replaced(self, at: int) -> Stored:
        return Stored(self.kid, self.alg, self.public, self.sealed, self.created, at)


def generate(alg: str, now: int, seal: MultiFernet) -> Stored:
    parameters: Any = {"alg": alg, "use": "sig"}
    key: AnyKey = (
        ECKey.generate_key("P-256", parameters=parameters)
        if alg == "ES256"
        else RSAKey.generate_key(RSA_BITS, parameters=parameters)
    )
    kid = key.thumbprint()
    public = key.as_dict(private=False) | {"kid": kid, "alg": alg, "use": "sig"}
    sealed = seal.encrypt(json.dumps(key.as_dict(private=True)).encode()).decode()
    return Stored(kid, alg, public, sealed, now, 0)


class SigningKeys:
    """The keys in Redis, with a short per-worker cache."""

    ALGORITHMS = ("RS256", "ES256")

    def __init__(self, client: redis.Redis, rotate_s: int, secret_keys: tuple[str, ...]) -> None:
        self.redis = client
        self.rotate_s = rotate_s
        self.seal = sealer(secret_keys)
        self._lock = threading.Lock()
        self._cache: tuple[float, list[Stored]] = (0.0, [])

    def _read(self) -> list[Stored]:
        raw: dict[str, str] = self.redis.hgetall(Keys.oidc_keys())  # type: ignore[assignment]
        return [Stored.from_json(text) for text in raw.values()]

    def _all(self, *, fresh: bool = False) -> list[Stored]:
        read_at, stored = self._cache
        if fresh or time.monotonic() - read_at > CACHE_S:
            stored = self._read()
            self._cache = (time.monotonic(), stored)
        return stored

    def _usable(self, stored: list[Stored], alg: str) -> tuple[Stored, AnyKey] | None:
        """The current key for ``alg``, unsealed, unless it is due for replacement."""
        found = [s for s in stored if s.alg == alg and not s.retired]
        if not found:
            return None
        current = max(found, key=lambda s: s.created)
        if time.time() - current.created >= self.rotate_s:
            return None
        try:
            private = json.loads(self.seal.decrypt(current.sealed.encode()))
        except InvalidToken:
            return None  # sealed under a SECRET_KEY no longer configured
        return current, _import(private)

    def signing(self, alg: str) -> tuple[str, AnyKey]:
        """The kid and private key to sign with now, making or replacing keys when due."""
        usable = self._usable(self._all(), alg)
        while usable is None:
            with self._lock:
                usable = self._usable(self._all(fresh=True), alg)
                if usable is None and not self.rotate():
                    time.sleep(0.1)  # another worker is rotating: read its keys
        current, key = usable
        return current.kid, key

    def rotate(self) -> list[str]:
        """Make a new key for each algorithm and retire the current ones; drop the keys
        retired long enough ago. One worker at a time (a lock in Redis); the kids made,
        none when another worker was rotating."""
        lock = Keys.oidc_keys() + ":rotating"
        if not self.redis.set(lock, "1", nx=True, ex=LOCK_S):
            return []
        try:
            now = int(time.time())
            stored = self._read()
            made = [generate(alg, now, self.seal) for alg in self.ALGORITHMS]
            updates: dict[Any, Any] = {s.kid: s.to_json() for s in made}
            updates |= {s.kid: s.replaced(now).to_json() for s in stored if not s.retired}
            gone = [s.kid for s in stored if s.retired and now - s.retired > KEEP_S]
            with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(Keys.oidc_keys(), mapping=updates)
                if gone:
                    pipe.hdel(Keys.oidc_keys(), *gone)
                pipe.execute()
            self._cache = (0.0, [])
            return [s.kid for s in made]
        finally:
            self.redis.delete(lock)

    def published(self) -> dict[str, Any]:
        """The JWKS: the public half of every key not long retired (made first when
        there are none yet, or replaced when due)."""
        for alg in self.ALGORITHMS:
            self.signing(alg)
        now = int(time.time())
        live = [s for s in self._all(fresh=True) if not s.retired or now - s.retired <= KEEP_S]
        return {"keys": [s.public for s in sorted(live, key=lambda s: -s.created)]}

    def verifying(self) -> KeySet:
        """The published keys, to check a token of ours (an ``id_token_hint``)."""
        return KeySet.import_key_set(self.published())  # type: ignore[arg-type]


def _import(jwk: dict[str, Any]) -> AnyKey:
    key_type = ECKey if jwk["kty"] == "EC" else RSAKey
    return key_type.import_key(jwk)
