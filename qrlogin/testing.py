"""Real servers for the test suite and the benchmark: a redis-server and the service
under gunicorn + gevent, each in a process group of its own.

Whatever fails, nothing is left behind: a server that does not come up is killed
before the error is raised, and every server still running when the process exits
(normally, on an error, or on Ctrl-C) is killed with its whole group.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Self

import redis

ROOT = Path(__file__).resolve().parent.parent

INSTALL_HINT = (
    "The tests need a real Redis server. Either set REDIS_URL to one that answers, "
    "or install redis-server so it is on PATH (Debian: `apt-get install redis-server`)."
)
#: Multiplies every wait for a server; raise it on a slow or busy machine.
PATIENCE = float(os.environ.get("QRLOGIN_TEST_PATIENCE", "1") or 1)
#: How long a server may take to answer after it was started (seconds, before PATIENCE).
START_S = 60.0
#: How long a stopped server may take to exit before it is killed (seconds).
STOP_S = 10.0

_running: set[Process] = set()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2).ping())
    except (redis.exceptions.RedisError, ValueError):
        return False


def http_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:  # noqa: S310 (our own loopback)
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class Process:
    """A server process in its own group, killed with the group when stopped."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603 (argv built here, not from input)
                argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        _running.add(self)

    def wait_until(self, ready: Callable[[], bool]) -> None:
        """Poll ``ready`` until it holds; stop the process and raise if it never does."""
        deadline = time.monotonic() + START_S * PATIENCE
        while not ready():
            if self.process is None or self.process.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.name} exited while starting:\n{self.log()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} did not answer in time:\n{self.log()}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """Kill the process and everything it started."""
        _running.discard(self)
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(STOP_S * PATIENCE)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_all() -> None:
    """Kill every server this process started and has not stopped."""
    for process in list(_running):
        process.stop()


atexit.register(stop_all)


class RedisServer(Process):
    """A redis-server of our own, on a port that survives restarts."""

    def __init__(
        self, log_dir: Path | None = None, persistent: bool = False, maxclients: int = 20000
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(INSTALL_HINT)
        self.binary = binary
        self.persistent = persistent
        self.maxclients = maxclients
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="qrlogin-redis-", dir=log_dir)
        super().__init__(f"redis-server on port {self.port}", Path(self.dir) / "redis.log")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        self.spawn(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always",
             "--dir", self.dir, "--maxclients", str(self.maxclients)],
        )  # fmt: skip
        self.wait_until(lambda: redis_answers(self.url))
        return self


def find_or_start(log_dir: Path | None = None) -> tuple[str, RedisServer | None]:
    """REDIS_URL when it answers; otherwise a redis-server of our own on a free port."""
    url = os.environ.get("REDIS_URL")
    if url and redis_answers(url):
        return url, None
    if shutil.which("redis-server") is None:
        hint = f"REDIS_URL={url!r} does not answer. " if url else ""
        raise RuntimeError(hint + INSTALL_HINT)
    server = RedisServer(log_dir).start()
    return server.url, server


class Service(Process):
    """``gunicorn -c gunicorn.conf.py wsgi:app`` on a free port, as the Procfile runs it."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        workers: int = 1,
        config: str = "gunicorn.conf.py",
    ) -> None:
        self.port = free_port()
        self.config = config
        self.env = {
            **os.environ,
            "QRLOGIN_ACCESS_LOG": "",
            **env,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
        }
        super().__init__(f"gunicorn on port {self.port}", log_dir / f"gunicorn-{self.port}.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self.spawn([sys.executable, "-m", "gunicorn", "-c", self.config, "wsgi:app"], self.env)
        self.wait_until(lambda: http_answers(self.url + "/healthz"))
        return self

    def terminate(self) -> float:
        """SIGTERM the master; the seconds until it exited."""
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(6 * STOP_S * PATIENCE)
        return time.monotonic() - started
