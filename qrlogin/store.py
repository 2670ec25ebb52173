"""The QR state machine in Redis: keys, atomic transitions, publishing.

The rules live in ``transitions.lua`` and nowhere else; this module names the
keys, calls the script and turns its replies into values or ``QRLoginError``s.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from importlib import resources
from typing import Any

import redis

from qrlogin.config import RETENTION_S
from qrlogin.exceptions import (
    BadRequest,
    Conflict,
    Expired,
    Forbidden,
    NotFound,
    QRLoginError,
    VerifyFailed,
)

WAIT, SCANNED, SUCCESS = "QRCODE_WAIT", "QRCODE_SCANNED", "QRCODE_SUCCESS"
CANCEL, EXPIRE, ERROR = "QRCODE_CANCEL", "QRCODE_EXPIRE", "QRCODE_ERROR"
STATUSES = (WAIT, SCANNED, SUCCESS, CANCEL, EXPIRE, ERROR)
#: Statuses after which nothing changes; SUCCESS also ends a stream (the browser redeems).
TERMINAL = frozenset({CANCEL, EXPIRE, ERROR})
STEPS = ("SCAN", "VERIFY", "CANCEL")

#: What QR ids look like; anything else cannot name a QR (ids are ``secrets.token_urlsafe``).
QR_ID_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
#: Bytes of randomness in a QR id (192 bits).
QR_ID_BYTES = 24


class Keys:
    """Every Redis key and channel name of the service comes from here.

    The QR id sits in a hash tag so that a QR's key and channel share a
    Redis Cluster slot (sharded pub/sub).
    """

    NAMESPACE = "qrlogin"

    @classmethod
    def qr(cls, qr_id: str) -> str:
        return f"{cls.NAMESPACE}:qr:{{{qr_id}}}"

    @classmethod
    def channel(cls, qr_id: str) -> str:
        return f"{cls.NAMESPACE}:events:{{{qr_id}}}"

    @classmethod
    def qr_id_of_channel(cls, channel: str) -> str:
        return channel[channel.index("{") + 1 : channel.rindex("}")]


@dataclass(frozen=True)
class Snapshot:
    """A QR's public view (what its bound browser may see) and its version."""

    view: dict[str, Any]
    version: int

    @property
    def status(self) -> str:
        return str(self.view["status"])


@dataclass(frozen=True)
class StepResult:
    """The outcome of a mobile step, with the requesting browser's context."""

    snapshot: Snapshot
    client: dict[str, Any]
    changed: bool


@dataclass(frozen=True)
class GuestResult:
    """The answer to a browser's poll; ``login`` is set once, when it redeemed."""

    snapshot: Snapshot
    login: dict[str, Any] | None


@dataclass(frozen=True)
class Requester:
    """The browser asking for a QR, as the phone will be shown it."""

    ip: str
    user_agent: str
    browser: str
    os: str


@dataclass(frozen=True)
class User:
    """A signed-in mobile user, from a verified user token."""

    id: str
    name: str
    avatar: str | None


def bind_digest(browser_secret: str) -> str:
    """What the store keeps of a browser secret: its digest, never the secret."""
    return hashlib.sha256(browser_secret.encode()).hexdigest()


def new_qr_id() -> str:
    return secrets.token_urlsafe(QR_ID_BYTES)


def check_qr_id(value: object) -> str:
    """A QR id from a request: 400 when not a string, 404 when it cannot exist."""
    if not isinstance(value, str):
        raise BadRequest("QR id must be a string")
    if not QR_ID_RE.match(value):
        raise NotFound()
    return value


class Store:
    """Atomic operations on QR sessions."""

    def __init__(self, client: redis.Redis, qr_ttl_s: int) -> None:
        self.redis = client
        self.qr_ttl_s = qr_ttl_s
        source = resources.files("qrlogin").joinpath("transitions.lua").read_text()
        self._script = client.register_script(source)

    def _run(self, qr_id: str, *args: str | int) -> tuple[str, str, int, str]:
        result, view, version, extra = self._script(
            keys=[Keys.qr(qr_id), Keys.channel(qr_id)], args=list(args)
        )
        if result == "NOT_FOUND":
            raise NotFound()
        if result == "FORBIDDEN":
            raise Forbidden()
        return str(result), str(view), int(version), str(extra)

    def _call(self, qr_id: str, *args: str | int) -> tuple[str, Snapshot, Any]:
        """Run an action on an existing QR: its result, snapshot and extra reply."""
        result, view, version, extra = self._run(qr_id, *args)
        return result, Snapshot(json.loads(view), version), json.loads(extra) if extra else None

    def create(self, platform: str, bind: str, requester: Requester) -> Snapshot:
        while True:  # a taken id is astronomically unlikely; draw again if it happens
            qr_id = new_qr_id()
            result, snapshot, _ = self._call(
                qr_id, "create", qr_id, bind, platform, self.qr_ttl_s, RETENTION_S,
                requester.ip, requester.user_agent, requester.browser, requester.os,
            )  # fmt: skip
            if result == "OK":
                return snapshot

    def read(self, qr_id: str, bind: str) -> Snapshot:
        """The current state (an overdue QR becomes QRCODE_EXPIRE here)."""
        return self._call(qr_id, "read", bind)[1]

    def versions(self, qr_ids: list[str]) -> list[int | None]:
        """Current versions of many QRs in one round trip (None: no such QR)."""
        pipe = self.redis.pipeline(transaction=False)
        for qr_id in qr_ids:
            pipe.hget(Keys.qr(qr_id), "version")
        return [None if v is None else int(v) for v in pipe.execute()]

    def replace(self, qr_id: str, bind: str) -> None:
        """Mark a live QR of this browser ``replaced``; anything else is ignored."""
        with contextlib.suppress(NotFound):  # the contract ignores an unknown code
            self._run(qr_id, "replace", bind)

    def guest(self, qr_id: str, bind: str) -> GuestResult:
        """Read the state and, on QRCODE_SUCCESS, redeem it once."""
        result, snapshot, login = self._call(qr_id, "guest", bind)
        return GuestResult(snapshot, login if result == "REDEEMED" else None)

    def step(
        self, qr_id: str, step: str, user: User, verify_code: str | None, matching: bool
    ) -> StepResult:
        fresh = f"{secrets.randbelow(100):02d}" if matching and step == "SCAN" else ""
        result, snapshot, client = self._call(
            qr_id, "step", step, user.id, user.name, user.avatar or "", verify_code or "", fresh
        )
        if result in ("OK", "NOOP"):
            return StepResult(snapshot, client, changed=result == "OK")
        error: QRLoginError
        if result == "EXPIRED":
            error = Expired(data={"status": snapshot.status})
        elif result == "VERIFY_FAILED":
            error = VerifyFailed(data={"status": snapshot.status})
        elif result == "CODE_MISSING":
            error = BadRequest("verify_code is required: type the code shown in the browser")
        else:
            error = Conflict(
                f"{step} is not allowed while the QR code is {snapshot.status}",
                data={"status": snapshot.status},
            )
        raise error
