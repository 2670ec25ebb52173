"""A loop that runs in the background of each process that serves requests: a daemon
thread (a greenlet, under gevent) started by the process's first request, so that a
worker forked after the app was built runs its own."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable


class Background:
    def __init__(self, loop: Callable[[], None], name: str) -> None:
        self.loop = loop
        self.name = name
        self._started_in = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the loop in this process, unless it runs here already."""
        pid = os.getpid()
        if self._started_in == pid:
            return
        with self._lock:
            if self._started_in == pid:
                return
            self._started_in = pid
        threading.Thread(target=self.loop, name=self.name, daemon=True).start()
