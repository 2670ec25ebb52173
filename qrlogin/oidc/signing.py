"""The provider's signing keys, kept in Redis so that every worker signs with the same
ones: an ES256 and an RS256 key, replaced on a schedule (or by ``flask keys rotate``).
A replaced key stays published in the JWKS until every token it signed has expired."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import redis
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


@dataclass(frozen=True)
class Stored:
    """One key as kept: its private JWK, and when it was made and replaced (0: current)."""

    kid: str
    alg: str
    jwk: dict[str, Any]
    created: int
    retired: int

    def to_json(self) -> str:
        return json.dumps({"alg": self.alg, "jwk": self.jwk, "created": self.created,
                           "retired": self.retired})  # fmt: skip

    @classmethod
    def from_json(cls, kid: str, text: str) -> Stored:
        data = json.loads(text)
        return cls(kid, data["alg"], data["jwk"], int(data["created"]), int(data["retired"]))


def generate(alg: str, now: int) -> Stored:
    parameters: Any = {"alg": alg, "use": "sig"}
    key: AnyKey = (
        ECKey.generate_key("P-256", parameters=parameters)
        if alg == "ES256"
        else RSAKey.generate_key(RSA_BITS, parameters=parameters)
    )
    kid = key.thumbprint()
    jwk = {**key.as_dict(private=True), "kid": kid}
    return Stored(kid, alg, jwk, now, 0)


class SigningKeys:
    """The keys in Redis, with a short per-worker cache."""

    ALGORITHMS = ("RS256", "ES256")

    def __init__(self, client: redis.Redis, rotate_s: int) -> None:
        self.redis = client
        self.rotate_s = rotate_s
        self._lock = threading.Lock()
        self._cache: tuple[float, list[Stored]] = (0.0, [])

    def _read(self) -> list[Stored]:
        raw: dict[str, str] = self.redis.hgetall(Keys.oidc_keys())  # type: ignore[assignment]
        return [Stored.from_json(kid, text) for kid, text in raw.items()]

    def _all(self, *, fresh: bool = False) -> list[Stored]:
        read_at, stored = self._cache
        if fresh or time.monotonic() - read_at > CACHE_S:
            stored = self._read()
            self._cache = (time.monotonic(), stored)
        return stored

    def signing(self, alg: str) -> tuple[str, AnyKey]:
        """The kid and private key to sign with now, making or replacing keys when due."""
        now = int(time.time())
        current = self._current(self._all(), alg)
        if current is None or now - current.created >= self.rotate_s:
            with self._lock:
                current = self._current(self._all(fresh=True), alg)
                if current is None or now - current.created >= self.rotate_s:
                    self.rotate()
                    current = self._current(self._all(fresh=True), alg)
        assert current is not None  # noqa: S101 (rotate() stored one)
        return current.kid, _import(current.jwk)

    @staticmethod
    def _current(stored: list[Stored], alg: str) -> Stored | None:
        found = [s for s in stored if s.alg == alg and not s.retired]
        return max(found, key=lambda s: s.created) if found else None

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
            made = [generate(alg, now) for alg in self.ALGORITHMS]
            updates: dict[Any, Any] = {s.kid: s.to_json() for s in made}
            for old in stored:
                if not old.retired:
                    updates[old.kid] = Stored(old.kid, old.alg, old.jwk, old.created, now).to_json()
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
        keys = [
            _import(s.jwk).as_dict(private=False) | {"kid": s.kid, "alg": s.alg, "use": "sig"}
            for s in sorted(self._all(fresh=True), key=lambda s: -s.created)
            if not s.retired or now - s.retired <= KEEP_S
        ]
        return {"keys": keys}

    def verifying(self) -> KeySet:
        """The published keys, to check a token of ours (an ``id_token_hint``)."""
        return KeySet.import_key_set(self.published())  # type: ignore[arg-type]


def _import(jwk: dict[str, Any]) -> AnyKey:
    key_type = ECKey if jwk["kty"] == "EC" else RSAKey
    return key_type.import_key(jwk)
