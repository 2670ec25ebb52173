"""``python -m tests.ingevent [pytest arguments]``: this folder's tests under gevent."""

from gevent import monkey

monkey.patch_all()

import sys  # noqa: E402 (after patching, as every gevent program)
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

sys.exit(pytest.main(["-p", "no:cacheprovider", str(Path(__file__).parent), *sys.argv[1:]]))
