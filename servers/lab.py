"""The deployment lab: hosts in network namespaces on networks of their own, as the
service is deployed, rather than everything on loopback.

One router namespace holds a bridge per network and forwards between them, over IPv4
and IPv6. Every host is a namespace with one interface on its network::

    home   198.18.1.0/24  fd00:1::/64   the browser (.10) and a phone on the same network (.11)
    away   198.18.2.0/24  fd00:2::/64   a phone on another network
    edge   198.18.3.0/24  fd00:3::/64   the proxy host (nginx)
    app    198.18.4.0/24  fd00:4::/64   the service (gunicorn)
    data   198.18.5.0/24  fd00:5::/64   Redis, over TLS

Only 198.18.0.0/15 and fd00::/8 are used, and nothing is routed out of the lab: the
namespaces have no link to the machine's own network. Commands run in a host with
``ip netns exec``; the tests talk HTTP there with curl.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from servers.nginx import PROXY, nginx_binary, nginx_config
from servers.process import PATIENCE, Process
from servers.redis_server import TLSFiles

#: The networks, by the third part of their IPv4 prefix (and the second group of IPv6).
NETWORKS = {"home": 1, "away": 2, "edge": 3, "app": 4, "data": 5}
#: Each host: its network and its number on it.
HOSTS = {
    "browser": ("home", 10),
    "near": ("home", 11),
    "far": ("away", 10),
    "proxy": ("edge", 10),
    "service": ("app", 10),
    "redis": ("data", 10),
}
#: The service's and Redis' addresses, which the test certificates name.
SERVER_NAMES = ("198.18.4.10", "fd00:4::10", "198.18.5.10", "fd00:5::10", "198.18.3.10")
#: Where the service, Redis (TLS) and nginx listen in their hosts.
SERVICE_PORT, REDIS_PORT, PROXY_PORT = 8000, 6380, 80


def ipv4(network: str, number: int) -> str:
    return f"198.18.{NETWORKS[network]}.{number}"


def ipv6(network: str, number: int) -> str:
    return f"fd00:{NETWORKS[network]}::{number:x}"


def unavailable() -> str | None:
    """Why this machine cannot build the lab (None when it can): it needs root, iproute2,
    curl, and network namespaces."""
    if os.geteuid() != 0:
        return "the deployment lab needs root (network namespaces)"
    for tool in ("ip", "curl"):
        if shutil.which(tool) is None:
            return f"the deployment lab needs {tool} (Debian: apt-get install iproute2 curl)"
    name = f"qrl-probe-{os.getpid()}"
    probe = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"this machine cannot create network namespaces: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return None


def _ip(*argv: str) -> None:
    subprocess.run(["ip", *argv], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class Host:
    name: str
    ns: str
    network: str
    number: int

    @property
    def ipv4(self) -> str:
        return ipv4(self.network, self.number)

    @property
    def ipv6(self) -> str:
        return ipv6(self.network, self.number)

    def argv(self, *command: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *command]

    @contextlib.contextmanager
    def more_ipv6(self, numbers: range) -> Iterator[list[str]]:
        """More addresses on this host's network, for the block's length."""
        addresses = [ipv6(self.network, number) for number in numbers]
        try:
            for address in addresses:
                _ip("-n", self.ns, "addr", "add", f"{address}/64", "dev", "eth0", "nodad")
            yield addresses
        finally:
            for address in addresses:
                subprocess.run(["ip", "-n", self.ns, "addr", "del", f"{address}/64", "dev",
                                "eth0"], capture_output=True)  # fmt: skip

    def curl(self, url: str, *options: str, timeout: float = 30) -> Answer:
        """``curl`` from this host: the answer's status, headers and body."""
        done = subprocess.run(
            self.argv("curl", "-sS", "-g", "-D", "-", "--max-time", str(timeout * PATIENCE),
                      *options, url),
            capture_output=True, text=True, timeout=timeout * PATIENCE + 10,
        )  # fmt: skip
        if done.returncode not in (0, 28):  # 28: the time ran out (a stream, on purpose)
            raise RuntimeError(f"curl {url} from {self.name} failed: {done.stderr}")
        return Answer.parse(done.stdout)

    def popen(self, *command: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(*command), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: str

    @classmethod
    def parse(cls, output: str) -> Answer:
        head, _, body = output.replace("\r\n", "\n").partition("\n\n")
        while head.startswith("HTTP/") and body.startswith("HTTP/"):  # 100 Continue
            head, _, body = body.partition("\n\n")
        lines = head.splitlines()
        status = int(lines[0].split()[1]) if lines else 0
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return cls(status, headers, body)

    def json(self) -> Any:
        return json.loads(self.body)


class Lab:
    """The router and the hosts; ``stop`` removes every namespace it made."""

    def __init__(self) -> None:
        self.tag = f"qrl{os.getpid()}"
        self.router = f"{self.tag}-router"
        self.hosts = {
            name: Host(name, f"{self.tag}-{name}", network, number)
            for name, (network, number) in HOSTS.items()
        }
        self.made: list[str] = []

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def start(self) -> Self:
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def _build(self) -> None:
        _ip("netns", "add", self.router)
        self.made.append(self.router)
        r = self.router
        for key in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"):
            subprocess.run(
                ["ip", "netns", "exec", r, "sysctl", "-qw", key], check=True, capture_output=True
            )
        for network, number in NETWORKS.items():
            bridge = f"br{number}"
            _ip("-n", r, "link", "add", bridge, "type", "bridge")
            _ip("-n", r, "addr", "add", f"{ipv4(network, 1)}/24", "dev", bridge)
            _ip("-n", r, "addr", "add", f"{ipv6(network, 1)}/64", "dev", bridge, "nodad")
            _ip("-n", r, "link", "set", bridge, "up")
        for index, host in enumerate(self.hosts.values()):
            _ip("netns", "add", host.ns)
            self.made.append(host.ns)
            port = f"p{index}"
            _ip("link", "add", "eth0", "netns", host.ns, "type", "veth",
                "peer", "name", port, "netns", r)  # fmt: skip
            _ip("-n", r, "link", "set", port, "master", f"br{NETWORKS[host.network]}", "up")
            _ip("-n", host.ns, "addr", "add", f"{host.ipv4}/24", "dev", "eth0")
            _ip("-n", host.ns, "addr", "add", f"{host.ipv6}/64", "dev", "eth0", "nodad")
            _ip("-n", host.ns, "link", "set", "lo", "up")
            _ip("-n", host.ns, "link", "set", "eth0", "up")
            _ip("-n", host.ns, "route", "add", "default", "via", ipv4(host.network, 1))
            _ip("-n", host.ns, "-6", "route", "add", "default", "via", ipv6(host.network, 1))

    def stop(self) -> None:
        for ns in reversed(self.made):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.made.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LabProcess(Process):
    """A server in a lab host, ready once ``probe`` (run in ``ready_from``) succeeds."""

    def __init__(self, name: str, host: Host, log_dir: Path) -> None:
        super().__init__(f"{name} in {host.name}", log_dir / f"{host.ns}-{name}.log")
        self.host = host

    def launch(self, argv: list[str], env: dict[str, str], probe: list[str]) -> None:
        self.spawn(self.host.argv(*argv), env)
        self.wait_until(
            lambda: subprocess.run(self.host.argv(*probe), capture_output=True).returncode == 0
        )


class LabRedis(LabProcess):
    """redis-server in the Redis host, speaking TLS only, with a password and a
    certificate signed by the tests' CA (as Heroku Redis's is signed by its own)."""

    def __init__(self, host: Host, log_dir: Path, tls: TLSFiles, maxclients: int = 1000) -> None:
        super().__init__("redis-server", host, log_dir)
        self.tls = tls
        self.maxclients = maxclients
        self.password = secrets.token_hex(16)
        self.dir = log_dir / f"{host.ns}-redis"
        self.dir.mkdir(exist_ok=True)

    @property
    def url(self) -> str:
        return f"rediss://:{self.password}@{self.host.ipv4}:{REDIS_PORT}/0"

    def cli(self, *command: str) -> list[str]:
        """``redis-cli`` in the Redis host, with the CA and the password."""
        return self.host.argv(
            "redis-cli", "--tls", "--cacert", self.tls.ca, "-h", self.host.ipv4,
            "-p", str(REDIS_PORT), "--no-auth-warning", "-a", self.password, *command,
        )  # fmt: skip

    def start(self) -> Self:
        self.launch(
            ["redis-server", "--port", "0", "--tls-port", str(REDIS_PORT),
             "--bind", f"{self.host.ipv4} {self.host.ipv6}", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir), "--maxclients", str(self.maxclients),
             "--tls-cert-file", self.tls.cert, "--tls-key-file", self.tls.key,
             "--tls-ca-cert-file", self.tls.ca, "--tls-auth-clients", "no",
             "--requirepass", self.password],
            dict(os.environ),
            self.cli("ping")[4:],
        )  # fmt: skip
        return self


class LabService(LabProcess):
    """The service under gunicorn in the service host, listening on ``[::]`` (dual stack:
    IPv4 clients arrive as ``::ffff:a.b.c.d``), as the Procfile runs it."""

    def __init__(self, host: Host, log_dir: Path, env: dict[str, str]) -> None:
        super().__init__("gunicorn", host, log_dir)
        self.env = {
            **os.environ,
            **env,
            "PORT": str(SERVICE_PORT),
            "WEB_CONCURRENCY": "1",
            "GUNICORN_CMD_ARGS": f"--bind [::]:{SERVICE_PORT}",
        }

    def url(self, family: int = 4) -> str:
        address = self.host.ipv4 if family == 4 else f"[{self.host.ipv6}]"
        return f"http://{address}:{SERVICE_PORT}"

    def start(self) -> Self:
        import sys

        self.launch(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            self.env,
            ["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{SERVICE_PORT}/healthz"],
        )
        return self


class LabNginx(LabProcess):
    """nginx in the proxy host, on one dual-stack socket (``[::]`` with ``ipv6only=off``:
    IPv4 browsers reach it as mapped addresses), passing to the service over IPv6."""

    def __init__(self, host: Host, log_dir: Path, upstream: Host, lines: str) -> None:
        super().__init__("nginx", host, log_dir)
        self.dir = log_dir / f"{host.ns}-nginx-{time.monotonic_ns()}"
        self.dir.mkdir()
        self.upstream = upstream
        self.lines = lines

    def url(self, family: int = 4) -> str:
        return f"http://{self.host.ipv4 if family == 4 else f'[{self.host.ipv6}]'}"

    def start(self) -> Self:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("this needs nginx: apt-get install nginx")
        config = self.dir / "nginx.conf"
        upstream = f"[{self.upstream.ipv6}]:{SERVICE_PORT}"
        server = PROXY.format(upstream=upstream, lines=self.lines)
        config.write_text(nginx_config(self.dir, f"[::]:{PROXY_PORT} ipv6only=off", server))
        self.launch(
            [binary, "-p", str(self.dir), "-c", str(config)],
            dict(os.environ),
            ["curl", "-sf", "-o", "/dev/null", f"http://127.0.0.1:{PROXY_PORT}/healthz"],
        )
        return self


@contextlib.contextmanager
def stream_from(host: Host, url: str, cookies: str, seconds: float) -> Iterator[list[str]]:
    """Read an SSE stream with curl from ``host`` for at most ``seconds``. The block runs
    once the stream's opening event arrived; the lines read fill the yielded list once the
    stream ends (or the time runs out) after the block."""
    process = host.popen("curl", "-sS", "-N", "-g", "-b", cookies, "--max-time",
                         str(seconds * PATIENCE), url)  # fmt: skip
    assert process.stdout is not None
    lines: list[str] = []
    try:
        while not any(line.startswith("data:") for line in lines):
            line = process.stdout.readline()
            if not line:
                break  # ended before its opening: the caller sees what came
            lines.append(line.rstrip("\n"))
        yield lines
    finally:
        try:
            out, _ = process.communicate(timeout=seconds * PATIENCE + 10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, _ = process.communicate()
        lines.extend(out.splitlines())
