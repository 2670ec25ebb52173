"""The tests under gevent (tests/ingevent: the hub, the lot and the stream drivers in
one process), run as part of the suite in a process of their own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from servers.process import ROOT
from tests.live import margin

pytestmark = pytest.mark.slow

#: gevent warns when it patches too late: the runner patches before anything else loads.
PATCH_WARNING = "gevent.monkey.MonkeyPatchWarning"


def test_the_hub_the_lot_and_the_drivers_under_gevent(redis_url: str) -> None:
    env = {**os.environ, "REDIS_URL": redis_url}
    done = subprocess.run(
        [sys.executable, "-m", "tests.ingevent", "-q", "-W", f"error::{PATCH_WARNING}"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=margin(300),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
