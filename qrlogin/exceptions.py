"""Every error type of the service.

Each ``QRLoginError`` carries the HTTP status and the envelope ``code`` of the
contract; ``envelope.py`` turns any of them into the JSON envelope in one place.
The others stop a process from starting (``ConfigError``, ``HubError``) or stay
inside the hub (``DeadConnectionError``).
"""

from __future__ import annotations

from typing import Any


class ConfigError(Exception):
    """A setting in the environment is missing or invalid; the process must not start."""


class HubError(RuntimeError):
    """The event hub cannot run in this process (gevent has not patched it)."""


class DeadConnectionError(ConnectionError):
    """The hub's subscriber connection stopped answering its health checks."""


class QRLoginError(Exception):
    """Root of the errors a client can cause or see."""

    status: int = 400
    code: str = "BAD_REQUEST"
    default_msg: str = "bad request"

    def __init__(self, msg: str | None = None, data: dict[str, Any] | None = None) -> None:
        self.msg = msg or self.default_msg
        self.data = data
        super().__init__(self.msg)


class BadRequest(QRLoginError):
    status, code, default_msg = 400, "BAD_REQUEST", "bad request"


class PayloadTooLarge(QRLoginError):
    status, code, default_msg = 413, "BAD_REQUEST", "request body is larger than 16 KiB"


class RequestTimeout(QRLoginError):
    status, code, default_msg = 408, "REQUEST_TIMEOUT", "the request body came too slowly"


class Unauthorized(QRLoginError):
    status, code, default_msg = 401, "UNAUTHORIZED", "missing, malformed or expired token"


class Forbidden(QRLoginError):
    status, code, default_msg = 403, "QRCODE_FORBIDDEN", "this QR code belongs to another browser"


class SessionEnded(QRLoginError):
    status, code, default_msg = 401, "SESSION_ENDED", "this login session has ended; log in again"


class SessionNotFound(QRLoginError):
    status, code, default_msg = 404, "SESSION_NOT_FOUND", "no such session"


class OriginForbidden(QRLoginError):
    status, code, default_msg = 403, "ORIGIN_FORBIDDEN", "requests from this origin are not allowed"


class VerifyFailed(QRLoginError):
    status, code, default_msg = 403, "QRCODE_VERIFY_FAILED", "wrong verification code"


class NotFound(QRLoginError):
    status, code, default_msg = 404, "QRCODE_NOT_FOUND", "no such QR code"


class Conflict(QRLoginError):
    status, code, default_msg = 409, "QRCODE_CONFLICT", "that step is not allowed now"


class Expired(QRLoginError):
    status, code, default_msg = 410, "QRCODE_EXPIRE", "the QR code has expired"


class SlowDown(QRLoginError):
    status, code, default_msg = 429, "SLOW_DOWN", "too many requests, slow down"

    def __init__(self, retry_after_s: int, msg: str | None = None) -> None:
        super().__init__(msg)
        self.retry_after_s = retry_after_s


class Overloaded(QRLoginError):
    status, code, default_msg = (
        503,
        "OVERLOADED",
        "the service is busy: try again after Retry-After",
    )
    #: When to try again (seconds); clients add jitter of their own.
    retry_after_s = 1


class Unavailable(QRLoginError):
    status, code, default_msg = 503, "UNAVAILABLE", "the state store is unavailable, try again"
    #: When to try again (seconds): the Retry-After of every 503.
    retry_after_s = 5
