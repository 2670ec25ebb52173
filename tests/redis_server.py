"""Finding or starting the real Redis server the tests talk to."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import redis

INSTALL_HINT = (
    "The tests need a real Redis server. Either set REDIS_URL to one that answers, "
    "or install redis-server so it is on PATH (Debian: `apt-get install redis-server`)."
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except (redis.exceptions.RedisError, ValueError):
        return False


class RedisServer:
    """A redis-server process of the test's own, on a port that survives restarts."""

    def __init__(self, persistent: bool = False, maxclients: int = 20000) -> None:
        self.persistent = persistent
        self.maxclients = maxclients
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.binary = binary
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="qrlogin-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always",
             "--dir", self.dir, "--maxclients", str(self.maxclients)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not answers(self.url):
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


def find_or_start() -> tuple[str, RedisServer | None]:
    """REDIS_URL when it answers; otherwise a redis-server of our own on a free port."""
    url = os.environ.get("REDIS_URL")
    if url and answers(url):
        return url, None
    if shutil.which("redis-server") is None:
        hint = f"REDIS_URL={url!r} does not answer. " if url else ""
        raise RuntimeError(hint + INSTALL_HINT)
    server = RedisServer().start()
    return server.url, server
