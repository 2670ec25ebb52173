"""The QR code image: a PNG whose decoded text is exactly the QR's ``content``.

segno encodes the symbol; Pillow writes the PNG. Measured in-process on this project's
2-core box for a typical content: segno with its defaults took 6.4 ms per QR at this
scale, of which 3.8 ms went to trying all eight masks and 1.4 ms to segno's
pure-Python PNG writer (Pillow's C encoder: 0.3 ms). A fixed mask and Pillow bring it
to 1.5 ms; ``python -m bench`` measures it again, with the whole request around it.
Every mask is valid; the QR payload (a random id in JSON) has no structure that a
particular mask would suit better, and every QR the service makes is decoded in tests.
"""

from __future__ import annotations

import base64
import io
import json
from typing import Any

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
