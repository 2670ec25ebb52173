"""A server process in a group of its own, free ports, and what answers."""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Self

import redis

#: The project's folder.
ROOT = Path(__file__).resolve().parent.parent

#: Multiplies every wait for a server; raise it on a slow or busy machine.
PATIENCE = float(os.environ.get("QRLOGIN_TEST_PATIENCE", "1") or 1)
#: How long a server may take to answer after it was started (seconds, before PATIENCE).
START_S = 60.0
#: How long a stopped server may take to exit before it is killed (seconds).
STOP_S = 10.0

_running: set[Process] = set()


def _first_ephemeral_port() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


#: Where servers started here listen: below the kernel's range for outgoing connections,
#: so that no client connection opened meanwhile can take the port between the check and
#: the server's bind (a port from the kernel's own pick could be, and once was). The top
#: leaves room for a cluster bus port 10000 higher.
LISTEN_PORTS = range(10000, max(_first_ephemeral_port() - 10000, 10100))
#: Ports handed out by this process, never handed out twice (servers created together,
#: such as a cluster's nodes, are bound only later).
_given: set[int] = set()


def free_port(bus: int | None = None) -> int:
    """A free loopback port from :data:`LISTEN_PORTS`; with ``bus``, port + bus is free too."""
    offsets = (0,) if bus is None else (0, bus)
    while True:
        port = random.choice(LISTEN_PORTS)  # noqa: S311 (not a secret)
        wanted = {port + offset for offset in offsets}
        if wanted & _given:
            continue
        with contextlib.ExitStack() as stack:
            try:
                for offset in offsets:
                    sock = stack.enter_context(socket.socket())
                    sock.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            _given.update(wanted)
            return port


def redis_answers(url: str, ca_file: str | None = None) -> bool:
    """Whether the Redis at ``url`` answers PING; over TLS trusting ``ca_file``."""
    tls = {"ssl_ca_certs": ca_file} if ca_file and url.startswith("rediss:") else {}
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=2, **tls)
        return bool(client.ping())
    except (redis.exceptions.RedisError, ValueError):
        return False


def http_answers(url: str, ca_file: str | None = None) -> bool:
    """Whether ``url`` answers 200; over HTTPS trusting ``ca_file``."""
    context = ssl.create_default_context(cafile=ca_file) if url.startswith("https:") else None
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except (OSError, urllib.error.URLError):
        return False


#: TCP states as /proc/net/tcp writes them.
ESTABLISHED, LISTENING = "01", "0A"


def tcp_sockets(pids: list[int], port: int, state: str) -> dict[int, set[str]]:
    """The IPv4 TCP sockets on local ``port`` in ``state`` that each process holds, by
    inode (Linux: /proc/net/tcp and each process's descriptors)."""
    on_port = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == state:
            on_port.add(fields[9])
    held: dict[int, set[str]] = {pid: set() for pid in pids}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):  # closed meanwhile
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in on_port:
                    held[pid].add(target[8:-1])
    return held


class Process:
    """A server process in its own group, killed with the group when stopped."""

    def __init__(self, name: str, log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
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

    def workers(self) -> list[int]:
        """The pids of the started server's workers (gunicorn's, nginx's): its children
        (Linux: /proc)."""
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        master = self.process.pid
        return [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]

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
