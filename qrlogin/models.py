"""The contract's vocabulary: statuses, steps, what ids look like, and the values passed
between the views, the store and the hub.

Everything that spells a word of the contract (``/openapi.json``, the SDK's tests, the
benchmark) takes it from here, so that a word is written once.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from typing import Any

WAIT, SCANNED, SUCCESS = "QRCODE_WAIT", "QRCODE_SCANNED", "QRCODE_SUCCESS"
CANCEL, EXPIRE, ERROR = "QRCODE_CANCEL", "QRCODE_EXPIRE", "QRCODE_ERROR"
STATUSES = (WAIT, SCANNED, SUCCESS, CANCEL, EXPIRE, ERROR)
#: Statuses after which nothing changes.
TERMINAL = frozenset({CANCEL, EXPIRE, ERROR})
#: Statuses after which a stream or a long poll ends (the browser redeems SUCCESS).
FINAL = TERMINAL | {SUCCESS}
#: Why a QR is QRCODE_ERROR.
REASONS = ("replaced", "used", "verify_failed")
STEPS = ("SCAN", "VERIFY", "CANCEL")

#: What QR ids look like; anything else cannot name a QR (ids are ``secrets.token_urlsafe``).
#: ``\Z``, not ``$``: a trailing newline is not part of an id.
QR_ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"
QR_ID_RE = re.compile(QR_ID_PATTERN.removesuffix("$") + r"\Z")
#: Bytes of randomness in a QR id (128 bits, the contract's minimum: a shorter id keeps
#: the QR at version 5, which is quicker to make and to scan).
QR_ID_BYTES = 16
#: What platform names look like.
PLATFORM_PATTERN = r"^[A-Za-z0-9_.\-]{1,32}$"
PLATFORM_RE = re.compile(PLATFORM_PATTERN.removesuffix("$") + r"\Z")
#: Digits in the verification code shown in the browser when number matching is on.
CODE_DIGITS = 2
#: QR codes one shared stream may watch: as many as a browser may hold live (the default cap).
MAX_WATCHED = 20
#: The code as the browser shows it.
VERIFY_CODE_PATTERN = rf"^[0-9]{{{CODE_DIGITS}}}$"
#: The code as the phone may send it: the digits, with spaces around them.
CODE_PATTERN = rf"^\s*[0-9]{{{CODE_DIGITS}}}\s*$"
CODE_RE = re.compile(rf"\s*([0-9]{{{CODE_DIGITS}}})\s*\Z")


def new_qr_id() -> str:
    return secrets.token_urlsafe(QR_ID_BYTES)


def bind_digest(browser_secret: str) -> str:
    """What the store keeps of a browser secret: its digest, never the secret."""
    return hashlib.sha256(browser_secret.encode()).hexdigest()


@dataclass(frozen=True)
class Snapshot:
    """A QR's public view (what its bound browser may see) and its version.

    ``final_version`` is the version at which the QR first reached a final status
    (0 while it has not), so a client that saw it can be told that nothing more comes.
    """

    view: dict[str, Any]
    version: int
    final_version: int = 0

    @property
    def status(self) -> str:
        return str(self.view["status"])

    @property
    def expire(self) -> int:
        """The QR's deadline (Unix seconds)."""
        return int(self.view["expire"])


@dataclass(frozen=True)
class StepResult:
    """The outcome of a mobile step, with the requesting browser's context."""

    snapshot: Snapshot
    client: dict[str, Any]


@dataclass(frozen=True)
class GuestResult:
    """The answer to a browser's poll; ``login`` is set once, when it redeemed."""

    snapshot: Snapshot
    login: dict[str, Any] | None
    #: The QR was bound to the browser's previous binding (see browser.rotated_secret):
    #: its binding was already renewed at an earlier login, so it is not renewed again.
    by_previous: bool = False


@dataclass(frozen=True)
class Actor:
    """Who makes a call, as the audit trail records it."""

    ip: str
    user_agent: str


NO_ACTOR = Actor("", "")


@dataclass(frozen=True)
class Requester(Actor):
    """The browser asking for a QR, as the phone will be shown it."""

    browser: str
    os: str


@dataclass(frozen=True)
class User:
    """A signed-in mobile user, from a verified user token."""

    id: str
    name: str
    avatar: str | None
