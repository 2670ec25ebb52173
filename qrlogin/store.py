"""The QR state machine in Redis: atomic transitions, publishing.

The rules live in ``transitions.lua`` and nowhere else; this module calls the script
with the keys ``qrlogin.keys`` names and turns its replies into values or
``QRLoginError``s.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from typing import Any

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
from qrlogin.keys import Keys
from qrlogin.lua import LIVE_SOURCE, SOURCE
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
