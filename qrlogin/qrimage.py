"""The QR code image: a PNG whose decoded text is exactly the QR's ``content``.

zxing-cpp (C++) encodes the symbol: 0.05 ms per QR here with the service's usual mask
(``usual_mask``), where segno (pure Python, even with one fixed mask) took 1.19 ms. At 8
pixels per module, one module is one byte of a 1-bit PNG row, so the symbol's module
rows, as zxing-cpp gives them (0 dark, 255 light), are the PNG's rows as they are:
writing the PNG here costs under 0.1 ms, where Pillow's converting and writing took
0.4 ms. The tests decode every QR (zxing-cpp, and jsQR in the browser).
"""

from __future__ import annotations

import base64
import collections
import json
import struct
import time
import zlib
from functools import lru_cache
from typing import Any, cast
from urllib.parse import quote

import zxingcpp

from qrlogin.models import new_qr_id

#: Pixels per QR module (one byte of a 1-bit row), and quiet-zone modules around it (the
#: standard's 4, which zxing-cpp adds itself: ``add_quiet_zones``).
SCALE_PX = 8
BORDER_MODULES = 4
#: Error correction: level L (7%) keeps the symbol small; a screen is a clean medium.
EC_LEVEL = "L"
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: A PNG row starts with its filter type: 0 (none) for a module row's first pixel row,
#: 2 ("up", the row above) for its other SCALE_PX - 1, which then are all zeros. With
#: zlib's fastest level that is about 0.8 KB, in 31 us (level 6: 0.2 ms). A smaller
#: hash table (memory level 4, not 8) finds the same matches in 18 us: the repeats
#: are one row apart.
_NONE = b"\x00"
_UP = b"\x02"
_ZLIB_LEVEL = 1
_ZLIB_MEMORY_LEVEL = 4
#: How many codes of the service's shape choose the mask (see ``usual_mask``).
MASK_SAMPLES = 16


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


@lru_cache(maxsize=8)
def usual_mask(prefix: str) -> int:
    """The data mask the standard's penalty rule picks for most of this service's codes.

    The rule scores all eight masks on every symbol: with it zxing-cpp took 0.22 ms a
    code, with a given mask 0.05 ms (300 codes, in one process). The codes of one
    service differ only in their id and deadline; the prefix, the keys and the function
    patterns are the same, and they weigh most in the score. With the default prefix
    the rule chose mask 2 for 274 codes of 300 (platform "web") and for 189 of 300
    ("Rxx_PC"); with the prefix "myapp://login/" it is split (mask 2 for 86 of 200, 6
    for 57). So the rule runs here, once per prefix, on MASK_SAMPLES codes shaped
    like the service's, and every code then takes the mask most of them got. Every mask
    makes a valid symbol that readers decode; the tests decode the codes with zxing-cpp,
    and with jsQR in the browser."""
    votes: collections.Counter[int] = collections.Counter()
    for _ in range(MASK_SAMPLES):
        view = {"id": new_qr_id(), "expire": int(time.time()) + 120}
        votes[_mask_of(content(view, prefix, "web"))] += 1
    return votes.most_common(1)[0][0]


def _mask_of(text: str) -> int:
    symbol = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, options=_options())
    image = symbol.to_image(scale=2, add_quiet_zones=True)
    only_qr = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)
    extra = cast(dict[str, Any], zxingcpp.read_barcodes(image, formats=only_qr)[0].extra)
    return int(extra["DataMask"])


def _options(mask: int | None = None) -> str:
    return f"ecLevel={EC_LEVEL}" + ("" if mask is None else f",dataMask={mask}")


def png(text: str, mask: int | None = None) -> bytes:
    """A black-on-white PNG of ``text``, SCALE_PX pixels per module, with a quiet zone;
    with data mask ``mask``, or the one the standard's rule picks for ``text``."""
    symbol = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, options=_options(mask))
    modules = symbol.to_image(scale=1, add_quiet_zones=True)
    side = modules.shape[0]
    grid = bytes(memoryview(modules))  # type: ignore[arg-type]  # a buffer; stubs omit it
    again = (_UP + bytes(side)) * (SCALE_PX - 1)
    # Each module row, then its repeats, then the next module row's filter byte: one join.
    modules_rows = [grid[start : start + side] for start in range(0, side * side, side)]
    rows = _NONE + (again + _NONE).join(modules_rows) + again
    pixels = side * SCALE_PX
    header = struct.pack(">IIBBBBB", pixels, pixels, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        _SIGNATURE
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", _deflate(rows))
        + _chunk(b"IEND", b"")
    )


def _deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(_ZLIB_LEVEL, zlib.DEFLATED, zlib.MAX_WBITS, _ZLIB_MEMORY_LEVEL)
    return packer.compress(data) + packer.flush()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_base64(text: str, mask: int | None = None) -> str:
    """Base64 PNG of ``text`` (no ``data:`` prefix)."""
    return base64.b64encode(png(text, mask)).decode("ascii")
