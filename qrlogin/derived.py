"""Files the service derives from its own when a process starts (compressed static
files, compiled translations), kept in the temporary folder under a digest of what they
come from: made once, by the first process that needs them, and shared by the others."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path


def derived_folder(kind: str, source: Path, build: Callable[[Path], None]) -> Path:
    """``qrlogin-<kind>-<digest of the files under source>`` in the temporary folder,
    filled by ``build(folder)`` when it is not there yet."""
    digest = hashlib.sha256()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(source)).encode() + b"\0" + path.read_bytes())
    target = Path(tempfile.gettempdir()) / f"qrlogin-{kind}-{digest.hexdigest()[:16]}"
    if target.is_dir():
        return target
    building = Path(tempfile.mkdtemp(prefix=f"qrlogin-{kind}-building-"))
    build(building)
    try:
        os.rename(building, target)
    except OSError:  # another process made it meanwhile
        shutil.rmtree(building, ignore_errors=True)
    return target
