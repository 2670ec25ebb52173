"""The QR state machine in Redis: keys, atomic transitions, publishing.

The rules live in ``transitions.lua`` and nowhere else; this module names the
keys, calls the script and turns its replies into values or ``QRLoginError``s.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from importlib import resources
from typing import Any, ClassVar

import redis

from qrlogin.config import RETENTION_S
from qrlogin.engine import UNAVAILABLE_ERRORS
from qrlogin.exceptions import (
    BadRequest,
    Conflict,
    Expired,
    Forbidden,
    NotFound,
    QRLoginError,
    SlowDown,
    VerifyFailed,
)
from qrlogin.geo import Place, script_args
from qrlogin.metrics import TRANSITIONS
from qrlogin.models import (
    CODE_DIGITS,
    NO_ACTOR,
    Actor,
    GuestResult,
    Requester,
    Snapshot,
    StepResult,
    User,
    new_qr_id,
)

#: Draws of a fresh QR id before giving up (a taken id is astronomically unlikely).
CREATE_ATTEMPTS = 3


def script(name: str) -> str:
    """A Lua script of the package as Redis runs it: a ``#!lua`` line with no flags (it
    writes, so a Redis out of memory refuses it whole), prelude.lua, then the script."""
    package = resources.files("qrlogin")
    prelude = package.joinpath("prelude.lua").read_text()
    return "#!lua\n" + prelude + "\n" + package.joinpath(name).read_text()


#: The script with every rule of the contract.
SOURCE = script("transitions.lua")
#: The script that keeps the cap on a browser's live QR codes.
LIVE_SOURCE = script("live.lua")


class Keys:
    """Every Redis key and channel name of the service comes from here.

    The id in each name sits in a hash tag, so that every key and channel one script
    touches share a Redis Cluster slot (and a shard's pub/sub): a QR's hash, channel and
    audit trail; a browser's live-QR set; a user's sessions, their channels, the user's
    session index and notices (a session is tagged with its user, not its own id).
    """

    NAMESPACE = "qrlogin"

    @classmethod
    def _tagged(cls, kind: str, tag: str) -> str:
        return f"{cls.NAMESPACE}:{kind}:{{{tag}}}"

    @classmethod
    def qr(cls, qr_id: str) -> str:
        return cls._tagged("qr", qr_id)

    @classmethod
    def channel(cls, qr_id: str) -> str:
        return cls._tagged("events", qr_id)

    @classmethod
    def audit(cls, qr_id: str) -> str:
        """The QR's audit trail (a stream that lives as long as the QR's hash)."""
        return cls._tagged("audit", qr_id)

    @classmethod
    def browser(cls, bind: str) -> str:
        """The live QR codes of one browser (by binding digest)."""
        return cls._tagged("browser", bind)

    @classmethod
    def session(cls, user_id: str, sid: str) -> str:
        return f"{cls._tagged('session', user_id)}:{sid}"

    @classmethod
    def session_channel(cls, user_id: str, sid: str) -> str:
        return f"{cls._tagged('session-events', user_id)}:{sid}"

    @classmethod
    def user(cls, user_id: str) -> str:
        """The user's notice counter (``version``)."""
        return cls._tagged("user", user_id)

    @classmethod
    def user_sessions(cls, user_id: str) -> str:
        return cls._tagged("user-sessions", user_id)

    @classmethod
    def user_notices(cls, user_id: str) -> str:
        return cls._tagged("user-notices", user_id)

    @classmethod
    def user_channel(cls, user_id: str) -> str:
        return cls._tagged("user-events", user_id)

    #: What /readyz writes to learn that Redis takes writes.
    READY_PROBE = f"{NAMESPACE}:ready"

    #: What a process noticed of forwarded headers it was told not to read (proxies.py).
    NOTICE_FORWARDED = f"{NAMESPACE}:notice:forwarded"

    #: The prefix of the rate limiter's keys (flask-limiter adds the rest).
    LIMITS = f"{NAMESPACE}:limits"

    #: Each kind of channel, and the hash whose ``version`` field its events count.
    STATE_OF_CHANNEL: ClassVar[dict[str, str]] = {
        f"{NAMESPACE}:events:": f"{NAMESPACE}:qr:",
        f"{NAMESPACE}:session-events:": f"{NAMESPACE}:session:",
        f"{NAMESPACE}:user-events:": f"{NAMESPACE}:user:",
    }

    @classmethod
    def state_of_channel(cls, channel: str) -> str:
        """The key of the hash whose ``version`` a channel's events carry."""
        for prefix, key_prefix in cls.STATE_OF_CHANNEL.items():
            if channel.startswith(prefix):
                return key_prefix + channel.removeprefix(prefix)
        raise ValueError(f"not one of our channels: {channel!r}")


class Store:
    """Atomic operations on QR sessions.

    ``max_live_qrs`` caps the live QR codes of one browser (0: no cap);
    ``source`` and ``live_source`` are the scripts to run (tests pass them with a
    shifted clock).
    """

    def __init__(
        self,
        client: redis.Redis,
        qr_ttl_s: int,
        max_live_qrs: int = 0,
        *,
        source: str = SOURCE,
        live_source: str = LIVE_SOURCE,
        reveal_on_confirm: bool = False,
    ) -> None:
        self.redis = client
        #: Show the scanner to the browser only once confirmed (not from the scan on).
        self.reveal_on_confirm = reveal_on_confirm
        self.qr_ttl_s = qr_ttl_s
        self.max_live_qrs = max_live_qrs
        self._script = client.register_script(source)
        self._live = client.register_script(live_source)

    def _run(
        self, qr_id: str, action: str, actor: Actor, bind: str = "", prev: str = "", **args: Any
    ) -> tuple[str, Snapshot | None, Any]:
        """Run one action: its result, the QR's snapshot (None: no QR) and its extra reply.
        ``bind``: the caller's binding digest; ``prev``: the one it replaced, if any."""
        payload = {
            **args,
            "bind": bind,
            "prev": prev,
            "ip": actor.ip,
            "user_agent": actor.user_agent,
            "reveal_on_confirm": self.reveal_on_confirm,
        }
        keys = [Keys.qr(qr_id), Keys.channel(qr_id), Keys.audit(qr_id)]
        result, view, version, extra, made, final_version = self._script(
            keys=keys, args=[action, json.dumps(payload, separators=(",", ":"))]
        )
        for event in json.loads(made):
            TRANSITIONS.labels(event).inc()
        if result == "NOT_FOUND":
            raise NotFound()
        if result == "FORBIDDEN":
            raise Forbidden()
        snapshot = Snapshot(json.loads(view), int(version), int(final_version)) if view else None
        return str(result), snapshot, json.loads(extra) if extra else None

    def _call(
        self, qr_id: str, action: str, actor: Actor, bind: str = "", prev: str = "", **args: Any
    ) -> tuple[str, Snapshot, Any]:
        """Run an action on an existing QR: its result, snapshot and extra reply."""
        result, snapshot, extra = self._run(qr_id, action, actor, bind, prev, **args)
        if snapshot is None:
            raise NotFound()
        return result, snapshot, extra

    def create(
        self, platform: str, bind: str, requester: Requester, place: Place | None = None
    ) -> Snapshot:
        for _ in range(CREATE_ATTEMPTS):
            qr_id = new_qr_id()
            self._admit(qr_id, bind)
            result, snapshot, _ = self._run(
                qr_id, "create", requester, bind, id=qr_id, platform=platform,
                ttl_s=self.qr_ttl_s, retention_s=RETENTION_S,
                browser=requester.browser, os=requester.os,
                **script_args(place, prefix="place_"),
            )  # fmt: skip
            if result == "OK" and snapshot is not None:
                return snapshot
            self._release(qr_id, bind)
            if result != "TAKEN":
                break
        raise RuntimeError(f"the transitions script answered {result!r} to create")

    def _admit(self, qr_id: str, bind: str) -> None:
        """Count the new QR against its browser's cap, or refuse it (429)."""
        if not self.max_live_qrs:
            return
        answer = self._live(
            keys=[Keys.browser(bind)], args=["admit", qr_id, self.max_live_qrs, self.qr_ttl_s]
        )
        if answer[0] == "TOO_MANY":
            raise SlowDown(
                int(answer[1]),
                "too many live QR codes in this browser; regenerate with `code` instead",
            )

    def _release(self, qr_id: str, bind: str) -> None:
        """The QR no longer counts against its browser's cap (it was redeemed or replaced).
        A second step on the browser's own slot: should it fail, the QR stops counting at
        its deadline instead."""
        if not self.max_live_qrs:
            return
        with contextlib.suppress(*UNAVAILABLE_ERRORS):
            self._live(keys=[Keys.browser(bind)], args=["release", qr_id])

    def owned_by(self, qr_id: str, bind: str, prev: str = "") -> bool:
        """Whether the browser of binding ``bind`` (or of ``prev``, the one it replaced)
        created the QR: as the script decides it, read without a transition."""
        found = self.redis.hget(Keys.qr(qr_id), "bind")
        return found is not None and found in {bind, prev} - {""}

    def read(self, qr_id: str, bind: str, actor: Actor = NO_ACTOR, *, prev: str = "") -> Snapshot:
        """The current state (an overdue QR becomes QRCODE_EXPIRE here)."""
        return self._call(qr_id, "read", actor, bind, prev)[1]

    def versions(self, channels: list[str]) -> list[int | None]:
        """Current versions behind many channels in one round trip (None: no such state)."""
        pipe = self.redis.pipeline(transaction=False)
        for channel in channels:
            pipe.hget(Keys.state_of_channel(channel), "version")
        return [None if v is None else int(v) for v in pipe.execute()]

    def replace(self, qr_id: str, bind: str, actor: Actor, *, prev: str = "") -> None:
        """Mark a live QR of this browser ``replaced``; anything else is ignored."""
        with contextlib.suppress(NotFound):  # the contract ignores an unknown code
            result = self._run(qr_id, "replace", actor, bind, prev)[0]
            if result.startswith("REPLACED"):
                # Out of the cap of the binding it was created under.
                self._release(qr_id, prev if result == "REPLACED_BY_PREVIOUS" else bind)

    def guest(
        self, qr_id: str, bind: str, actor: Actor = NO_ACTOR, *, prev: str = ""
    ) -> GuestResult:
        """Read the state and, on QRCODE_SUCCESS, redeem it once."""
        result, snapshot, login = self._call(qr_id, "guest", actor, bind, prev)
        if result.startswith("REDEEMED"):
            self._release(qr_id, prev if result == "REDEEMED_BY_PREVIOUS" else bind)
            return GuestResult(snapshot, login, by_previous=result == "REDEEMED_BY_PREVIOUS")
        return GuestResult(snapshot, None)

    def step(
        self,
        qr_id: str,
        step: str,
        user: User,
        actor: Actor,
        *,
        verify_code: str | None = None,
        matching: bool = False,
    ) -> StepResult:
        fresh = ""
        if matching and step == "SCAN":
            fresh = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        result, snapshot, client = self._call(
            qr_id, "step", actor, step=step, user_id=user.id, user_name=user.name,
            user_avatar=user.avatar or "", given=verify_code or "", fresh=fresh,
        )  # fmt: skip
        if result in ("OK", "NOOP"):
            return StepResult(snapshot, client)
        error: QRLoginError
        if result == "EXPIRED":
            error = Expired(data={"status": snapshot.status})
        elif result == "VERIFY_FAILED":
            error = VerifyFailed(data={"status": snapshot.status})
        elif result == "CODE_MISSING":
            error = BadRequest("verify_code is required: type the code shown in the browser")
        elif result == "CODE_UNEXPECTED":
            error = BadRequest("number matching is off for this QR code: send no verify_code")
        else:
            error = Conflict(
                f"{step} is not allowed while the QR code is {snapshot.status}",
                data={"status": snapshot.status},
            )
        raise error

    def audit_trail(self, qr_id: str | None = None, count: int = 100) -> list[dict[str, str]]:
        """The newest audit entries, oldest first: of one QR, or of every QR still kept
        (each trail lives as long as its QR's record; on a cluster, from every master)."""
        if qr_id is not None:
            keys = [Keys.audit(qr_id)]
        else:
            keys = [str(k) for k in self.redis.scan_iter(match=Keys.audit("*"), count=1000)]
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.xrevrange(key, count=count)
        entries = [
            {"id": entry_id, **fields} for trail in pipe.execute() for entry_id, fields in trail
        ]
        entries.sort(key=lambda e: (int(e["at"]), e["id"]))
        return entries[-count:]
