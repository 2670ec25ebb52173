"""What a SECRET_KEY and the service's other credentials must be: long, random, not a
sample's placeholder, never the public demo key."""

from __future__ import annotations

import re
from collections.abc import Mapping

from qrlogin.exceptions import ConfigError

#: Secret used only in demo mode when SECRET_KEY is unset. Never for production.
DEMO_SECRET_KEY = "qrlogin-demo-secret-not-for-production"  # noqa: S105 (public on purpose)
#: Said at every start of a process in demo mode.
DEMO_WARNING = (
    "\n" + "!" * 78 + "\n"
    "!! QRLOGIN_DEMO is on: the phone stand-in /m hands out user tokens to anyone, and\n"
    "!! without SECRET_KEY every token is signed with the PUBLIC demo key.\n"
    "!! NOT FOR PRODUCTION: unset QRLOGIN_DEMO and set a random SECRET_KEY.\n" + "!" * 78
)
#: Shortest accepted SECRET_KEY (``secrets.token_urlsafe(24)`` writes 32 characters), and
#: the fewest different characters in it (a random hex key of 32 has about 15).
MIN_SECRET_KEY_CHARS = 32
MIN_SECRET_DISTINCT = 10
#: Shortest accepted QRLOGIN_INTROSPECT_KEY.
MIN_SECRET_CHARS = 16
#: What sample configurations put where a secret goes (compared with the key's letters
#: and digits, lowercased): a key holding one of them was typed, not generated.
PLACEHOLDERS = (
    "yoursecret", "secretkeyhere", "changeme", "changethis", "replaceme", "placeholder",
    "notsecret", "insecure", "example", "password", "qwerty", "letmein", "0123456789",
    "abcdefghij",
)  # fmt: skip
#: How to make a key, as every refusal says.
MAKE_A_KEY = "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`"


def check_secret(key: str, name: str = "SECRET_KEY") -> None:
    """Refuse keys an attacker could guess: short ones, ones of few different characters,
    sample placeholders and anything holding the public demo key."""
    if DEMO_SECRET_KEY in key:
        raise ConfigError(
            f"{name} holds the public demo key: anyone can sign tokens with it. Set a long "
            f"random one ({MAKE_A_KEY}), or unset it with QRLOGIN_DEMO=1 to try the service"
        )
    if len(key) < MIN_SECRET_KEY_CHARS:
        raise ConfigError(
            f"{name} must be at least {MIN_SECRET_KEY_CHARS} characters long: {MAKE_A_KEY}"
        )
    if len(set(key)) < MIN_SECRET_DISTINCT:
        raise ConfigError(
            f"{name} is too weak (fewer than {MIN_SECRET_DISTINCT} different characters): "
            f"set a long random string, e.g. {MAKE_A_KEY}"
        )
    letters = re.sub(r"[^a-z0-9]", "", key.lower())
    found = next((p for p in PLACEHOLDERS if p in letters), None)
    if found is not None:
        raise ConfigError(
            f"{name} looks like a placeholder or a typed phrase ({found!r} in it): "
            f"generate one, e.g. {MAKE_A_KEY}"
        )


def credential(env: Mapping[str, str], name: str) -> str | None:
    """A service credential (the introspection key, the metrics token), when set."""
    key = env.get(name) or None
    if key is not None and (len(key) < MIN_SECRET_CHARS or len(set(key)) < MIN_SECRET_DISTINCT):
        raise ConfigError(
            f"{name} is too weak: at least {MIN_SECRET_CHARS} characters, "
            f"{MIN_SECRET_DISTINCT} of them different"
        )
    return key


def fallback_keys(raw: str | None) -> tuple[str, ...]:
    """SECRET_KEY_FALLBACKS: comma-separated keys, each checked as SECRET_KEY is."""
    keys = tuple(k.strip() for k in (raw or "").split(",") if k.strip())
    for key in keys:
        check_secret(key, "SECRET_KEY_FALLBACKS")
    return keys
