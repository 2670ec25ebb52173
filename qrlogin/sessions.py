"""Login sessions in Redis: created at redemption, ended by logout, by the phone, or by
their idle and absolute deadlines. The rules live in ``sessions.lua``; this module names
the keys, calls the script and reads the lists."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from qrlogin.config import RETENTION_S
from qrlogin.exceptions import SessionEnded, SessionNotFound
from qrlogin.geo import Place, script_args
from qrlogin.keys import Keys
from qrlogin.lua import script
from qrlogin.models import Requester, Snapshot, User

SOURCE = script("sessions.lua")
#: Bytes of randomness in a session id.
SESSION_ID_BYTES = 16
ACTIVE, ENDED = "active", "ended"
#: Why a session ended when the store no longer knows it (Redis lost it, say).
LOST = "lost"
#: A session's stream ends at this status.
SESSION_FINAL = frozenset({ENDED})
#: The SSE event type of a session's state.
SESSION_EVENT = "session"


@dataclass(frozen=True)
class Notice:
    """One entry of a user's notice stream: a session created or ended."""

    id: str
    type: str
    session: dict[str, Any]


class Sessions:
    """Atomic operations on login sessions; deadlines in seconds."""

    def __init__(
        self, client: redis.Redis, idle_s: int, absolute_s: int, *, source: str = SOURCE
    ) -> None:
        self.redis = client
        self.idle_s = idle_s
        self.absolute_s = absolute_s
        self._script = client.register_script(source)
        #: Told (user id, sid) of each session a call here ended (back-channel logout).
        self.on_end: Callable[[str, str], None] | None = None

    def _run(self, sid: str, owner: str, action: str, **args: Any) -> tuple[str, Snapshot | None]:
        keys = [
            Keys.session(owner, sid),
            Keys.session_channel(owner, sid),
            Keys.user_sessions(owner),
            Keys.user(owner),
            Keys.user_notices(owner),
            Keys.user_channel(owner),
        ]
        payload = json.dumps({**args, "retention_s": RETENTION_S}, separators=(",", ":"))
        result, view, version = self._script(keys=keys, args=[action, payload])
        snapshot = Snapshot(json.loads(view), int(version)) if view else None
        return str(result), snapshot

    def create(
        self, user: User, requester: Requester, place: Place | None, *, qr_id: str, platform: str
    ) -> Snapshot:
        sid = secrets.token_urlsafe(SESSION_ID_BYTES)
        _, snapshot = self._run(
            sid, user.id, "create", id=sid, user_id=user.id, user_name=user.name,
            user_avatar=user.avatar or "", platform=platform, browser=requester.browser,
            os=requester.os, ip=requester.ip, **script_args(place), qr_id=qr_id,
            idle_s=self.idle_s, absolute_s=self.absolute_s,
        )  # fmt: skip
        assert snapshot is not None  # noqa: S101 (create always answers the session)
        return snapshot

    def read(self, sid: str, user_id: str, *, touch: bool = False) -> Snapshot:
        """The session's state, ended or not; ``touch`` records a use (the idle clock)."""
        _, snapshot = self._run(sid, user_id, "check", touch=touch)
        if snapshot is None:
            raise SessionNotFound()
        return snapshot

    def check(self, sid: str, user_id: str, *, touch: bool = True) -> Snapshot:
        """The session, when it is active; ``SessionEnded`` (401) otherwise, a session the
        store no longer knows (lost with a Redis that kept nothing) included."""
        try:
            snapshot = self.read(sid, user_id, touch=touch) if sid else None
        except SessionNotFound:
            raise SessionEnded(data={"reason": LOST}) from None
        if snapshot is None or snapshot.status != ACTIVE:
            reason = snapshot.view.get("reason") if snapshot else None
            raise SessionEnded(data={"reason": reason} if reason else None)
        return snapshot

    def read_or_lost(self, sid: str, user_id: str, seen: Snapshot) -> Snapshot:
        """The session's state for its stream; a session the store no longer knows reads
        as ended (reason ``lost``), one version past ``seen``, the state its stream opened
        with (an active session changes only by ending)."""
        try:
            return self.read(sid, user_id)
        except SessionNotFound:
            view = {**seen.view, "status": ENDED, "reason": LOST, "ended_at": int(time.time())}
            return Snapshot(view, seen.version + 1)

    def end(self, sid: str, user_id: str, reason: str) -> Snapshot:
        """End the session (it may have ended already); its final state."""
        return self._end(sid, user_id, reason)[1]

    def _end(self, sid: str, user_id: str, reason: str) -> tuple[bool, Snapshot]:
        """End the session; whether this call ended it, and its final state."""
        result, snapshot = self._run(sid, user_id, "end", reason=reason)
        if snapshot is None:
            raise SessionNotFound()
        if result == "OK" and self.on_end is not None:
            self.on_end(user_id, sid)
        return result == "OK", snapshot

    def end_all(self, user_id: str, reason: str) -> list[Snapshot]:
        """End every session of the user; the ones this call ended, newest first."""
        ended = []
        for sid in self.redis.zrange(Keys.user_sessions(user_id), 0, -1):
            try:
                now_ended, snapshot = self._end(str(sid), user_id, reason)
            except SessionNotFound:
                continue
            if now_ended:
                ended.append(snapshot)
        return _newest_first(ended)

    def of_user(self, user_id: str) -> list[Snapshot]:
        """The user's active sessions, newest first (ended ones are left out)."""
        sids = self.redis.zrange(Keys.user_sessions(user_id), 0, -1)
        found = []
        for sid in sids:
            try:
                snapshot = self.read(str(sid), user_id)
            except SessionNotFound:
                continue
            if snapshot.status == ACTIVE:
                found.append(snapshot)
        return _newest_first(found)

    def notices_since(self, user_id: str, last_id: str) -> list[Notice]:
        """The user's notices after ``last_id`` (``0``: every one kept)."""
        entries: list[tuple[str, dict[str, str]]] = self.redis.xrange(  # type: ignore[assignment]
            Keys.user_notices(user_id), min=f"({last_id}", count=200
        )
        return [
            Notice(entry_id, fields["type"], json.loads(fields["data"]))
            for entry_id, fields in entries
        ]

    def notices_version(self, user_id: str) -> Snapshot:
        """The user's notice counter as a snapshot that never ends (for the hub)."""
        version = self.redis.hget(Keys.user(user_id), "version")
        return Snapshot({"status": "open", "expire": 2**40}, int(version or 0))

    def last_notice_id(self, user_id: str) -> str:
        newest: list[tuple[str, Any]] = self.redis.xrevrange(  # type: ignore[assignment]
            Keys.user_notices(user_id), count=1
        )
        return newest[0][0] if newest else "0"


def _newest_first(sessions: list[Snapshot]) -> list[Snapshot]:
    return sorted(sessions, key=lambda s: -int(s.view["created_at"]))
