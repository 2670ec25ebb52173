"""The QR code image: a PNG whose decoded text is exactly the QR's ``content``.

zxing-cpp (C++) encodes the symbol: 0.36 ms per QR here, where segno (pure Python, even
with one fixed mask) took 1.19 ms, and the image is most of what a QR creation costs
(docs/BENCHMARKS.md). At 8 pixels per module, one module is one byte of a 1-bit PNG row,
so the symbol's module rows, as zxing-cpp gives them (0 dark, 255 light), are the PNG's
rows as they are: writing the PNG here costs under 0.1 ms, where Pillow's converting and
writing took 0.4 ms. The tests decode every QR (zxing-cpp, and jsQR in
the browser).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from typing import Any
from urllib.parse import quote

import zxingcpp

#: Pixels per QR module (one byte of a 1-bit row), and quiet-zone modules around it (the
#: standard's 4, which zxing-cpp adds itself: ``add_quiet_zones``).
SCALE_PX = 8
BORDER_MODULES = 4
#: Error correction: level L (7%) keeps the symbol small; a screen is a clean medium.
EC_LEVEL = "L"
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A PNG row starts with its filter type: 0 (none) for a module row's first pixel row,
#: 2 ("up", the row above) for its other SCALE_PX - 1, which then are all zeros. With
#: zlib's fastest level that is 0.06 ms and about 0.8 KB; level 6 took 0.2 ms.
_NONE = b"\x00"
_UP = b"\x02"
_ZLIB_LEVEL = 1


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
    symbol = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level=EC_LEVEL)
    modules = symbol.to_image(scale=1, add_quiet_zones=True)
    side = modules.shape[0]
    grid = bytes(memoryview(modules))  # type: ignore[arg-type]  # a buffer; stubs omit it
    again = (_UP + bytes(side)) * (SCALE_PX - 1)
    rows = b"".join(
        _NONE + grid[start : start + side] + again for start in range(0, side * side, side)
    )
    pixels = side * SCALE_PX
    header = struct.pack(">IIBBBBB", pixels, pixels, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, _ZLIB_LEVEL))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_base64(text: str) -> str:
    """Base64 PNG of ``text`` (no ``data:`` prefix)."""
    return base64.b64encode(png(text)).decode("ascii")
