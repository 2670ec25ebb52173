"""Static files (the SDK, the pages' scripts and styles, jsQR, the favicon) served by
WhiteNoise: compressed copies (brotli, gzip) made once for the files' contents, ETag and
Last-Modified validators (304 on a match), and a short Cache-Control max-age, since
pages of other sites load the SDK from its unversioned address.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from whitenoise import WhiteNoise
from whitenoise.compress import Compressor

from qrlogin.derived import derived_folder

STATIC = Path(__file__).resolve().parent.parent / "static"
#: How long browsers and proxies may keep a static file before asking again (seconds).
MAX_AGE_S = 600
#: The favicon, also at /favicon.ico, where browsers look for one.
FAVICON = "favicon.svg"


@cache
def compressed_copy() -> Path:
    """The static folder with a ``.br`` and a ``.gz`` beside each file worth compressing
    (``qrlogin.derived``)."""
    return derived_folder("static", STATIC, _compress_into)


def _compress_into(folder: Path) -> None:
    shutil.copytree(STATIC, folder, dirs_exist_ok=True)
    compressor = Compressor(quiet=True)
    for path in sorted(folder.rglob("*")):
        if path.is_file() and compressor.should_compress(path.name):
            compressor.compress(str(path))


def _headers(headers: Any, path: str, url: str) -> None:
    headers["X-Content-Type-Options"] = "nosniff"


def wsgi(app: Callable[..., Any]) -> WhiteNoise:
    """Serve ``/static/...`` and ``/favicon.ico`` in front of ``app``."""
    root = compressed_copy()
    served = WhiteNoise(
        app,
        root=str(root),
        prefix="static/",
        max_age=MAX_AGE_S,
        allow_all_origins=True,
        add_headers_function=_headers,
    )
    favicon = root / FAVICON
    served.add_file_to_dictionary("/favicon.ico", str(favicon), stat_cache=None)
    return served
