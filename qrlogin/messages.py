"""The layout of the message published on a QR's channel at each transition.

``transitions.lua`` writes it (in ``transition()``); the hub reads it with ``parse``.
It is flask-sse's message layout, plus when the transition was made::

    {"data": <the QR's public view>, "type": "status", "id": <version>, "at": <ms>}

- ``data``: the view the bound browser may see (``Snapshot.view``), never a token.
- ``id``: the state version after the transition; SSE sends it as the event id.
- ``at``: the Redis clock at the transition, in milliseconds since the epoch. Other
  publishers in flask-sse's layout may leave it out.

Pub/sub only wakes waiters; the store stays the truth, so a message that does not
parse still wakes them to re-read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from qrlogin.models import Snapshot

#: The SSE event type of a status change.
EVENT_TYPE = "status"


@dataclass(frozen=True)
class Published:
    """A snapshot as it arrived on the channel, with when it was made in Redis (ms, 0: unknown)."""

    snapshot: Snapshot
    at_ms: int = 0


def parse(raw: object) -> Published | None:
    """The message's snapshot; None when ``raw`` is not a message in this layout."""
    try:
        message = json.loads(raw)  # type: ignore[arg-type]
        version, view = int(message["id"]), message["data"]
        at_ms = int(message.get("at") or 0)
    except (TypeError, ValueError, KeyError, AttributeError):
        return None
    if not isinstance(view, dict) or "status" not in view or "expire" not in view:
        return None
    return Published(Snapshot(view, version), at_ms)
