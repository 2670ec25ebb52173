"""The QR code image: a PNG whose decoded text is exactly the QR's ``content``.

Zint (C, through zint-bindings) encodes the symbol, with the data mask the standard's
penalty rule picks for it, and lays it out one pixel per module, quiet zone included,
as one byte per pixel ('1' dark, '0' light); a translation makes that 0 and 255. At 8
pixels per module, one module is one byte of a 1-bit PNG row, so those module rows are
the PNG's rows as they are, and the standard library's zlib deflates them. The tests
decode every QR (zxing-cpp, and jsQR in the browser).
"""

from __future__ import annotations

import base64
import json
import math
import struct
import zlib
from typing import Any
from urllib.parse import quote

import zint

#: Pixels per QR module (one byte of a 1-bit row), and quiet-zone modules around it (the
#: standard's 4, which zint adds itself: ``BARCODE_QUIET_ZONES``).
SCALE_PX = 8
BORDER_MODULES = 4
#: Error correction: level L (7%) keeps the symbol small; a screen is a clean medium.
EC_LEVEL = "L"
#: Zint numbers the levels L, M, Q, H from 1.
_ZINT_EC_LEVEL = "LMQH".index(EC_LEVEL) + 1
#: Zint's raster at scale 0.5 is one pixel per module; "intermediate" output is one
#: byte per pixel, b"1" dark and b"0" light.
_ZINT_ONE_PIXEL = 0.5
_ZINT_OUTPUT = zint.OutputOptions.OUT_BUFFER_INTERMEDIATE | zint.OutputOptions.BARCODE_QUIET_ZONES
_DARK_LIGHT = bytes.maketrans(b"10", b"\x00\xff")
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A PNG row starts with its filter type: 0 (none) for a module row's first pixel row,
#: 2 ("up", the row above) for its other SCALE_PX - 1, which then are all zeros: runs
#: that deflate's fastest level already finds.
_NONE = b"\x00"
_UP = b"\x02"
_DEFLATE_LEVEL = 1
#: QR data masks are numbered 0 to 7.
MASKS = range(8)


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


def _modules(text: str, mask: int | None) -> bytes:
    """The symbol with its quiet zone, one byte per module (0 dark, 255 light), row by row;
    with data mask ``mask``, or the one the standard's rule picks for ``text``."""
    symbol = zint.Symbol()
    symbol.symbology = zint.Symbology.QRCODE
    symbol.option_1 = _ZINT_EC_LEVEL
    if mask is not None:
        symbol.option_3 = (mask + 1) << 8  # zint's way to ask for a mask
    symbol.output_options = _ZINT_OUTPUT
    symbol.scale = _ZINT_ONE_PIXEL
    symbol.encode(text.encode())
    symbol.buffer()
    side = symbol.width + 2 * BORDER_MODULES
    raster = symbol.bitmap
    if raster is None or symbol.rows + 2 * BORDER_MODULES != side:
        raise RuntimeError(f"zint drew no square QR symbol for {len(text)} characters")
    # The view is typed as 3 bytes a pixel, but intermediate output is one a pixel: copy
    # the side² bytes zint wrote and nothing past them.
    return raster.cast("B")[: side * side].tobytes().translate(_DARK_LIGHT)


def png(text: str, mask: int | None = None) -> bytes:
    """A black-on-white PNG of ``text``, SCALE_PX pixels per module, with a quiet zone;
    with data mask ``mask``, or the one the standard's rule picks for ``text``."""
    grid = _modules(text, mask)
    side = math.isqrt(len(grid))
    again = (_UP + bytes(side)) * (SCALE_PX - 1)
    # Each module row, then its repeats, then the next module row's filter byte: one join.
    modules_rows = [grid[start : start + side] for start in range(0, side * side, side)]
    rows = _NONE + (again + _NONE).join(modules_rows) + again
    pixels = side * SCALE_PX
    header = struct.pack(">IIBBBBB", pixels, pixels, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(rows, _DEFLATE_LEVEL))
        + _chunk(b"IEND", b"")
    )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_base64(text: str, mask: int | None = None) -> str:
    """Base64 PNG of ``text`` (no ``data:`` prefix)."""
    return base64.b64encode(png(text, mask)).decode("ascii")
