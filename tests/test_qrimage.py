"""The QR image: each code with the data mask the standard's penalty rule picks for it
(zint scores the eight masks on each symbol), read back exactly."""

from __future__ import annotations

import collections
import io
import time

import zxingcpp
from PIL import Image

from qrlogin import qrimage
from qrlogin.models import new_qr_id

DEFAULT_PREFIX = "rk://scanforpclogin/"  # the setting's default
QR_ONLY = zxingcpp.BarcodeFormats(zxingcpp.BarcodeFormat.QRCode)


def read(png: bytes) -> zxingcpp.Barcode:
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)), formats=QR_ONLY)
    assert len(found) == 1
    return found[0]


def sample(prefix: str = DEFAULT_PREFIX, platform: str = "web") -> str:
    view = {"id": new_qr_id(), "expire": int(time.time()) + 120}
    return qrimage.content(view, prefix, platform)


def test_each_code_reads_exactly_with_the_mask_chosen_for_it() -> None:
    masks: collections.Counter[int] = collections.Counter()
    for platform in ("web", "Rxx_PC"):
        for _ in range(30):
            text = sample(platform=platform)
            found = read(qrimage.png(text))
            assert found.text == text
            mask = int(found.extra["DataMask"])
            # The symbol is the one the rule drew for this text: no mask is imposed on it.
            assert qrimage.png(text) == qrimage.png(text, mask)
            masks[mask] += 1
    assert len(masks) > 1, masks  # the rule's choice differs from symbol to symbol


def test_a_code_drawn_with_any_mask_reads_exactly() -> None:
    text = sample()
    for mask in qrimage.MASKS:
        found = read(qrimage.png(text, mask))
        assert found.text == text and int(found.extra["DataMask"]) == mask
