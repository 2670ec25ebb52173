"""Every Redis key and channel name of the service."""

from __future__ import annotations

from typing import ClassVar


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
    def oidc_keys(cls) -> str:
        """The provider's signing keys (a hash: kid to the key as kept)."""
        return cls._tagged("oidc-keys", "oidc")

    @classmethod
    def oidc(cls, kind: str, token_hash: str) -> str:
        """A provider record named by a secret's hash: a pending authorization, a code,
        an access token."""
        return cls._tagged(f"oidc-{kind}", token_hash)

    @classmethod
    def oidc_parties(cls, user_id: str, sid: str) -> str:
        """The clients a session signed in to, with their issuer (a hash), on the
        session's slot."""
        return f"{cls._tagged('oidc-parties', user_id)}:{sid}"

    @classmethod
    def oidc_outbox(cls) -> str:
        """Back-channel logouts to deliver (a sorted set by when, and a hash of jobs)."""
        return cls._tagged("oidc-outbox", "oidc")

    @classmethod
    def oidc_watch(cls) -> str:
        """Sessions a client signed in to, by their deadline (a sorted set)."""
        return cls._tagged("oidc-watch", "oidc")

    @classmethod
    def state_of_channel(cls, channel: str) -> str:
        """The key of the hash whose ``version`` a channel's events carry."""
        for prefix, key_prefix in cls.STATE_OF_CHANNEL.items():
            if channel.startswith(prefix):
                return key_prefix + channel.removeprefix(prefix)
        raise ValueError(f"not one of our channels: {channel!r}")
