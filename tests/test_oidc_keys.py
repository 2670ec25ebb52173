"""The provider's signing keys in a real Redis: sealed with SECRET_KEY, replaced when
due, kept published while their tokens live, and unsealed with the fallbacks after a
rotation of SECRET_KEY."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import redis
from joserfc import jwt

from qrlogin.keys import Keys
from qrlogin.oidc.signing import KEEP_S, SigningKeys

DAY = 86400
OLD, NEW = "o" * 40, "n" * 40


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    found = redis.Redis.from_url(redis_url, decode_responses=True)
    found.delete(Keys.oidc_keys())
    yield found
    found.delete(Keys.oidc_keys())


def age(client: redis.Redis, seconds: int, *, retired: bool = False) -> None:
    """Make every stored key ``seconds`` older (and its retirement, with ``retired``)."""
    for kid, text in client.hgetall(Keys.oidc_keys()).items():
        stored = json.loads(text)
        stored["created"] -= seconds
        if retired and stored["retired"]:
            stored["retired"] -= seconds
        client.hset(Keys.oidc_keys(), kid, json.dumps(stored))


def test_redis_holds_no_private_key_in_the_clear(client: redis.Redis) -> None:
    keys = SigningKeys(client, 30 * DAY, (NEW,))
    kid, private = keys.signing("RS256")
    stored = client.hgetall(Keys.oidc_keys())
    assert len(stored) == 2  # RS256 and ES256
    for text in stored.values():
        record = json.loads(text)
        assert "d" not in record["public"] and '"d"' not in text
    token = jwt.encode({"alg": "RS256", "kid": kid}, {"sub": "x"}, private)
    assert jwt.decode(token, keys.verifying()).claims["sub"] == "x"


def test_keys_are_replaced_when_due_and_kept_published_while_their_tokens_live(
    client: redis.Redis,
) -> None:
    keys = SigningKeys(client, 30 * DAY, (NEW,))
    first, _ = keys.signing("ES256")
    age(client, 30 * DAY)
    keys = SigningKeys(client, 30 * DAY, (NEW,))  # a worker reading Redis afresh
    second, _ = keys.signing("ES256")
    assert second != first
    published = {k["kid"] for k in keys.published()["keys"]}
    assert {first, second} <= published and len(published) == 4
    age(client, KEEP_S + 1, retired=True)
    keys.rotate()
    assert first not in {k["kid"] for k in keys.published()["keys"]}


def test_a_rotated_secret_key_still_unseals_with_its_fallback(client: redis.Redis) -> None:
    before, _ = SigningKeys(client, 30 * DAY, (OLD,)).signing("RS256")
    with_fallback, _ = SigningKeys(client, 30 * DAY, (NEW, OLD)).signing("RS256")
    assert with_fallback == before
    without, _ = SigningKeys(client, 30 * DAY, (NEW,)).signing("RS256")
    assert without != before  # nothing unseals it: a new key, at once


def test_only_one_worker_rotates_at_a_time(client: redis.Redis) -> None:
    keys = SigningKeys(client, 30 * DAY, (NEW,))
    client.set(Keys.oidc_keys() + ":rotating", "1", ex=30)
    assert keys.rotate() == []
    client.delete(Keys.oidc_keys() + ":rotating")
    assert len(keys.rotate()) == 2
