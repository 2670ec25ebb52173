"""OpenID Connect Back-Channel Logout: when a session that signed in to relying parties
ends, by any path, each party with a ``backchannel_logout_uri`` gets a signed logout
token, retried with back-off, never in the request that ended the session.

Two sorted sets in Redis drive it, worked by one background loop per worker process:
the *watch* (such sessions, by their deadline: idle and absolute ends happen there, with
nobody asking) and the *outbox* (logout tokens to send, by when). An explicit end (the
phone, logout, end_all) takes the session off the watch at once and wakes the loop;
whoever takes it off (ZREM answers 1) queues its logouts, so each is queued once."""

from __future__ import annotations

import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from joserfc import jwt

from qrlogin.background import Background
from qrlogin.exceptions import SessionNotFound
from qrlogin.keys import Keys
from qrlogin.oidc.clients import Registry
from qrlogin.oidc.signing import SigningKeys
from qrlogin.sessions import ACTIVE, Sessions

log = logging.getLogger(__name__)

#: The loop's period when nothing wakes it (seconds).
PERIOD_S = 1.0
#: How long a relying party has to answer (seconds).
SEND_TIMEOUT_S = 5.0
#: A claimed delivery is tried again after this when its worker vanished (seconds).
LEASE_S = 30.0
#: Tries of one logout token, the first included; the waits between them double from
#: one second, up to five minutes (about 20 minutes in all).
MAX_TRIES = 10
MAX_WAIT_S = 300.0
#: How long a logout token is valid (seconds).
LOGOUT_TOKEN_TTL_S = 120
EVENT = "http://schemas.openid.net/event/backchannel-logout"
#: Sessions and deliveries looked at per turn of the loop.
BATCH = 50

CLAIM = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', KEYS[2], id) or ''
end
return out
"""


@dataclass(frozen=True)
class Job:
    """One logout token to deliver."""

    client_id: str
    iss: str
    sub: str
    sid: str
    tries: int = 0


def backoff_s(tries: int) -> float:
    """The wait after the ``tries``-th failed try."""
    return float(min(2 ** (tries - 1), MAX_WAIT_S))


class Backchannel:
    def __init__(
        self,
        client: redis.Redis,
        sessions: Sessions,
        registry: Registry,
        keys: SigningKeys,
        post: Callable[[str, str], int] | None = None,
    ) -> None:
        self.redis = client
        self.sessions = sessions
        self.registry = registry
        self.keys = keys
        self.post = post or post_form
        self._claim = client.register_script(CLAIM)
        self._wake = threading.Event()
        self._loop = Background(self._run, "qrlogin-backchannel")

    @property
    def _jobs(self) -> str:
        return Keys.oidc_outbox() + ":jobs"

    @staticmethod
    def _member(user_id: str, sid: str) -> str:
        return json.dumps([user_id, sid])

    def signed_in(self, user_id: str, sid: str, client_id: str, iss: str) -> None:
        """A relying party got an ID token for the session: it hears of its end."""
        client = self.registry.get(client_id)
        if client is None or not client.backchannel_logout_uri:
            return
        try:
            session = self.sessions.read(sid, user_id)
        except SessionNotFound:
            return
        parties = Keys.oidc_parties(user_id, sid)
        with self.redis.pipeline(transaction=False) as pipe:
            pipe.hset(parties, client_id, iss)
            pipe.expire(parties, self.sessions.absolute_s + 3600)
            pipe.execute()
        if session.status == ACTIVE:
            self.redis.zadd(Keys.oidc_watch(), {self._member(user_id, sid): session.view["expire"]})
        else:
            self._queue(user_id, sid)

    def session_ended(self, user_id: str, sid: str) -> None:
        """A session was just ended: queue its logouts (when it was watched), and wake
        the loop. Two Redis commands; the sending happens in the loop."""
        if self.redis.zrem(Keys.oidc_watch(), self._member(user_id, sid)):
            self._queue(user_id, sid)
            self._wake.set()

    def _queue(self, user_id: str, sid: str) -> None:
        parties: dict[str, str] = self.redis.hgetall(Keys.oidc_parties(user_id, sid))  # type: ignore[assignment]
        now = time.time()
        for client_id, iss in parties.items():
            job_id = secrets.token_urlsafe(12)
            self.redis.hset(
                self._jobs, job_id, json.dumps(Job(client_id, iss, user_id, sid).__dict__)
            )
            self.redis.zadd(Keys.oidc_outbox(), {job_id: now})

    def sweep(self) -> None:
        """Sessions past their deadline: ended ones are queued, the others (used since)
        are watched until their new deadline."""
        now = int(time.time())
        due: list[str] = self.redis.zrangebyscore(  # type: ignore[assignment]
            Keys.oidc_watch(), "-inf", now, start=0, num=BATCH
        )
        for member in due:
            user_id, sid = json.loads(member)
            try:
                session = self.sessions.read(sid, user_id)  # ends it when due
            except SessionNotFound:
                session = None
            if session is not None and session.status == ACTIVE:
                self.redis.zadd(Keys.oidc_watch(), {member: session.view["expire"]}, xx=True)
            elif self.redis.zrem(Keys.oidc_watch(), member):
                self._queue(user_id, sid)

    def deliver_due(self) -> int:
        """Send every logout that is due; how many went through."""
        now = time.time()
        claimed = self._claim(
            keys=[Keys.oidc_outbox(), self._jobs], args=[now, now + LEASE_S, BATCH]
        )
        sent = 0
        for job_id, text in zip(claimed[::2], claimed[1::2], strict=True):
            if not text:
                self.redis.zrem(Keys.oidc_outbox(), job_id)
                continue
            job = Job(**json.loads(text))
            if self._send(job):
                sent += 1
                self._forget(job_id)
            elif job.tries + 1 >= MAX_TRIES:
                log.warning("back-channel logout to %s for a session given up after %d tries",
                            job.client_id, MAX_TRIES)  # fmt: skip
                self._forget(job_id)
            else:
                again = Job(job.client_id, job.iss, job.sub, job.sid, job.tries + 1)
                self.redis.hset(self._jobs, job_id, json.dumps(again.__dict__))
                self.redis.zadd(Keys.oidc_outbox(), {job_id: time.time() + backoff_s(again.tries)})
        return sent

    def _forget(self, job_id: str) -> None:
        self.redis.zrem(Keys.oidc_outbox(), job_id)
        self.redis.hdel(self._jobs, job_id)

    def _send(self, job: Job) -> bool:
        client = self.registry.get(job.client_id)
        if client is None or not client.backchannel_logout_uri:
            return True  # nobody to tell any more
        try:
            status = self.post(client.backchannel_logout_uri, self.logout_token(job))
        except (OSError, ValueError) as error:
            log.info("back-channel logout to %s failed: %s", job.client_id, error)
            return False
        return 200 <= status < 300

    def logout_token(self, job: Job) -> str:
        """The signed logout token for one party (Back-Channel Logout 1.0, section 2.4)."""
        client = self.registry.get(job.client_id)
        alg = client.id_token_signed_response_alg if client else "RS256"
        kid, key = self.keys.signing(alg)
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": job.iss, "aud": job.client_id, "iat": now, "exp": now + LOGOUT_TOKEN_TTL_S,
            "jti": secrets.token_urlsafe(16), "sub": job.sub, "sid": job.sid,
            "events": {EVENT: {}},
        }  # fmt: skip
        return jwt.encode({"alg": alg, "kid": kid, "typ": "logout+jwt"}, claims, key)

    def turn(self) -> None:
        self.sweep()
        self.deliver_due()

    def start(self) -> None:
        """Start this process's loop, once."""
        self._loop.start()

    def _run(self) -> None:
        while True:
            self._wake.wait(PERIOD_S)
            self._wake.clear()
            try:
                self.turn()
            except redis.RedisError as error:
                log.warning("back-channel logout loop: Redis: %s", error)


def post_form(uri: str, logout_token: str) -> int:
    """POST the logout token as a form; the answer's status."""
    body = urllib.parse.urlencode({"logout_token": logout_token}).encode()
    req = urllib.request.Request(  # noqa: S310 (the operator registered the URI: http(s) only)
        uri, data=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        with urllib.request.urlopen(req, timeout=SEND_TIMEOUT_S) as answer:  # noqa: S310
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
