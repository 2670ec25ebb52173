"""Every timing margin of the suite comes from here, so one setting widens them all.

The suite checks behaviour, not speed (the benchmark measures speed). Where a test must
bound a time (an event arrives "promptly", a stopping worker exits "quickly"), it asks
``margin()`` for the bound. ``QRLOGIN_TEST_PATIENCE`` (default 1) multiplies every
margin, and the waits for servers to start (``qrlogin.testing``), on a slow machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from qrlogin.testing import PATIENCE

#: Something the service pushes "at once" arrives within this, on a busy 2-core box (s).
PROMPT_S = 2.0


def margin(seconds: float) -> float:
    """A time bound of ``seconds`` on an idle machine, widened by the patience setting."""
    return seconds * PATIENCE


def wait_until(check: Callable[[], bool], seconds: float, what: str) -> None:
    """Poll ``check`` until it holds; fail after ``margin(seconds)``."""
    deadline = time.monotonic() + margin(seconds)
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not after {margin(seconds):.0f} s")
        time.sleep(0.1)
