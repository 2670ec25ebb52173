"""The QR code image: a PNG whose decoded text is exactly the QR's ``content``."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import segno

#: Pixels per QR module, and quiet-zone modules around the symbol.
SCALE_PX = 6
BORDER_MODULES = 4


def content(view: dict[str, Any], prefix: str, platform: str) -> str:
    """The text in the QR: compact JSON with the keys in the contract's order."""
    return json.dumps(
        {"id": view["id"], "expire": view["expire"], "prefix": prefix, "platform": platform},
        separators=(",", ":"),
    )


def png_base64(text: str) -> str:
    """Base64 PNG of ``text`` (no ``data:`` prefix)."""
    symbol = segno.make(text, micro=False)
    buffer = io.BytesIO()
    symbol.save(buffer, kind="png", scale=SCALE_PX, border=BORDER_MODULES)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
