"""The QR code image: a PNG whose decoded text is exactly the QR's ``content``.

segno encodes the symbol with one fixed mask (it would otherwise try all eight, which
is most of its time) and Pillow's C encoder writes the PNG; docs/BENCHMARKS.md has the
measured cost of each. Every mask is valid: the payload (a random id in JSON) has no
structure that a particular mask would suit better, and the tests decode every QR.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any
from urllib.parse import quote

import segno
from PIL import Image

#: Pixels per QR module, and quiet-zone modules around the symbol.
SCALE_PX = 6
BORDER_MODULES = 4
#: The mask pattern used for every symbol (skips segno's evaluation of all eight).
MASK = 0
#: Maps segno's module values (1 dark, 0 light) to 8-bit grey (0 black, 255 white).
_GREY = bytes([255, 0]) + bytes(254)


def content(view: dict[str, Any], prefix: str, platform: str) -> str:
    """The text in the QR: compact JSON with the keys in the contract's order."""
    return json.dumps(
        {"id": view["id"], "expire": view["expire"], "prefix": prefix, "platform": platform},
        separators=(",", ":"),
    )


def app_link(prefix: str, text: str) -> str:
    """The same-device link: the prefix, and the QR's text as its ``qr`` parameter. The
    app reads it as it reads a scanned code."""
    return f"{prefix}?qr={quote(text, safe='')}"


def png(text: str) -> bytes:
    """A black-on-white PNG of ``text``, SCALE_PX pixels per module, with a quiet zone."""
    matrix = segno.make(text, micro=False, mask=MASK).matrix
    side = len(matrix) + 2 * BORDER_MODULES
    margin_rows = b"\xff" * (side * BORDER_MODULES)
    margin = b"\xff" * BORDER_MODULES
    grey = b"".join(margin + bytes(row).translate(_GREY) + margin for row in matrix)
    image = Image.frombytes("L", (side, side), margin_rows + grey + margin_rows).convert("1")
    image = image.resize((side * SCALE_PX, side * SCALE_PX), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def png_base64(text: str) -> str:
    """Base64 PNG of ``text`` (no ``data:`` prefix)."""
    return base64.b64encode(png(text)).decode("ascii")
