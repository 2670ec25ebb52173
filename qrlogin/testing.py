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
import random
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import redis
import redis.crc

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


NGINX_CONFIG = """{main}
daemon off;
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {connections}; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen {listen};
{server}
  }}
}}
"""


def nginx_config(
    folder: Path, listen: str, server: str, main: str = "", connections: int = 512
) -> str:
    """A whole nginx configuration that keeps all its files in ``folder``: one server
    listening on ``listen``, with ``server`` as its body."""
    return NGINX_CONFIG.format(
        main=main,
        user="user root;" if os.geteuid() == 0 else "",
        dir=folder,
        connections=connections,
        listen=listen,
        server=server,
    )


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )


class Nginx(Process):
    """Debian's nginx with one worker on a free loopback port, all its files in its own
    folder: ``main`` goes at the top of its configuration (``load_module`` ...)."""

    def __init__(self, log_dir: Path, main: str = "", connections: int = 512) -> None:
        self.port = free_port()
        self.main = main
        self.connections = connections
        self.dir = log_dir / f"nginx-{self.port}"
        self.dir.mkdir(parents=True)
        self.config = self.dir / "nginx.conf"
        super().__init__(f"nginx on port {self.port}", self.dir / "error.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, server: str, ready: str = "/healthz") -> Self:
        """Serve with ``server`` as the server block's body; wait until ``ready`` answers."""
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("this needs nginx: apt-get install nginx")
        self.config.write_text(
            nginx_config(self.dir, f"127.0.0.1:{self.port}", server, self.main, self.connections)
        )
        self.spawn([binary, "-p", str(self.dir), "-c", str(self.config)])
        self.wait_until(lambda: http_answers(self.url + ready))
        return self


@dataclass(frozen=True)
class TLSFiles:
    """A server's certificate chain and key, and the CA that signed it (PEM files)."""

    cert: str
    key: str
    ca: str


class RedisServer(Process):
    """A redis-server of our own, on a port that survives restarts."""

    def __init__(
        self,
        log_dir: Path | None = None,
        persistent: bool = False,
        maxclients: int = 20000,
        extra: tuple[str, ...] = (),
        tls: TLSFiles | None = None,
    ) -> None:
        self.extra = extra  # more redis-server arguments (--replicaof, say)
        self.tls = tls  # speak TLS only, with this certificate
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
        return f"{self.scheme}://127.0.0.1:{self.port}/0"

    @property
    def scheme(self) -> str:
        return "rediss" if self.tls else "redis"

    def listening(self) -> list[str]:
        """Where the server listens: its port, over TLS only when it has a certificate."""
        if self.tls is None:
            return ["--port", str(self.port)]
        return ["--port", "0", "--tls-port", str(self.port),
                "--tls-cert-file", self.tls.cert, "--tls-key-file", self.tls.key,
                "--tls-ca-cert-file", self.tls.ca, "--tls-auth-clients", "no",
                "--tls-replication", "yes"]  # fmt: skip

    def answers(self) -> bool:
        return redis_answers(self.url, self.tls.ca if self.tls else None)

    def start(self) -> Self:
        self.spawn(
            [self.binary, *self.listening(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "always",
             "--dir", self.dir, "--maxclients", str(self.maxclients), *self.extra],
        )  # fmt: skip
        self.wait_until(self.answers)
        return self

    def client(self) -> redis.Redis:
        if self.tls is None:
            return redis.Redis(port=self.port, socket_connect_timeout=1, decode_responses=True)
        return redis.Redis(
            port=self.port,
            socket_connect_timeout=1,
            decode_responses=True,
            ssl=True,
            ssl_ca_certs=self.tls.ca,
        )


class SentinelServer(RedisServer):
    """A Redis Sentinel watching one master (``mymaster``), quick to declare it down."""

    MASTER = "mymaster"
    DOWN_AFTER_MS = 1000

    def __init__(self, master: RedisServer, log_dir: Path | None = None) -> None:
        super().__init__(log_dir, tls=master.tls)
        self.master = master
        self.name = f"redis-sentinel on port {self.port}"

    def start(self) -> Self:
        config = Path(self.dir) / "sentinel.conf"  # the sentinel rewrites it as it learns
        listening = self.listening()
        config.write_text(
            "".join(f"{a[2:]} {b}\n" for a, b in zip(listening[::2], listening[1::2], strict=True))
            + f"bind 127.0.0.1\ndir {self.dir}\n"
            f"sentinel monitor {self.MASTER} 127.0.0.1 {self.master.port} 1\n"
            f"sentinel down-after-milliseconds {self.MASTER} {self.DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {self.MASTER} 5000\n"
        )
        self.spawn([self.binary, str(config), "--sentinel"])
        self.wait_until(self.answers)
        return self

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def master_port(self) -> int:
        address = self.client().execute_command(  # type: ignore[no-untyped-call]
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER
        )
        return int(address[1])

    def replicas_known(self) -> int:
        found = self.client().execute_command("SENTINEL", "REPLICAS", self.MASTER)  # type: ignore[no-untyped-call]
        return len(found)


class ClusterNode(RedisServer):
    """One node of a local Redis Cluster (cluster mode on, a short node timeout)."""

    def __init__(self, log_dir: Path | None = None, tls: TLSFiles | None = None) -> None:
        super().__init__(log_dir, tls=tls)
        self.port = free_port(bus=10000)
        self.name = f"redis-server (cluster) on port {self.port}"

    #: How long a silent master takes to count as failed (ms): its replica then takes over.
    NODE_TIMEOUT_MS = 1000

    def start(self) -> Self:
        self.spawn(
            [self.binary, *self.listening(), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--maxclients", str(self.maxclients),
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(self.NODE_TIMEOUT_MS),
             # a replica takes over however long ago it last heard its master, and syncs
             # at once rather than after diskless replication's default 5 s wait
             "--cluster-replica-validity-factor", "0", "--repl-diskless-sync-delay", "0",
             *(["--tls-cluster", "yes"] if self.tls else [])],
        )  # fmt: skip
        self.wait_until(self.answers)
        return self

    def info(self) -> dict[str, str]:
        """CLUSTER INFO as seen by this node."""
        info: dict[str, Any] = self.client().execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
        return {k: str(v) for k, v in info.items()}


class LocalCluster:
    """A real Redis Cluster on loopback: ``masters`` masters with ``replicas`` replicas
    each, joined by ``redis-cli --cluster create``, all stopped together."""

    def __init__(
        self,
        log_dir: Path | None = None,
        masters: int = 3,
        replicas: int = 1,
        tls: TLSFiles | None = None,
    ) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError(INSTALL_HINT)
        self.cli = cli
        self.nodes = [ClusterNode(log_dir, tls) for _ in range(masters * (1 + replicas))]
        self.replicas = replicas
        self.tls = tls

    @property
    def url(self) -> str:
        """Any node names the cluster; this is the first."""
        return self.nodes[0].url

    def start(self) -> Self:
        try:
            for node in self.nodes:
                node.start()
            subprocess.run(  # noqa: S603 (argv built here)
                [self.cli, *(["--tls", "--cacert", self.tls.ca] if self.tls else []),
                 "--cluster", "create",
                 *(f"127.0.0.1:{n.port}" for n in self.nodes),
                 "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                check=True, capture_output=True, timeout=START_S * PATIENCE,
            )  # fmt: skip
            self.wait_until_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def alive(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.process is not None]

    def wait_until_ok(self) -> None:
        """Until every live node sees the cluster ok, each master with its replicas."""
        deadline = time.monotonic() + START_S * PATIENCE
        while True:
            with contextlib.suppress(redis.exceptions.RedisError):
                if all(self._settled(n) for n in self.alive()):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("the local Redis Cluster did not come up in time")
            time.sleep(0.1)

    def _settled(self, node: ClusterNode) -> bool:
        """Whether ``node`` sees the cluster ok: every live node known and healthy, and
        each master holding slots with its replicas."""
        if node.info().get("cluster_state") != "ok":
            return False
        seen = self._nodes_seen(node)
        live = {n.port for n in self.alive()}
        healthy = {p for p, n in seen.items() if "fail" not in n["flags"] and n["connected"]}
        masters = {p for p in healthy if "master" in seen[p]["flags"] and seen[p]["slots"]}
        if not (healthy >= live and len(masters) * (1 + self.replicas) == len(live)):
            return False
        if "slave" in seen[node.port]["flags"]:
            return bool(node.client().info("replication").get("master_link_status") == "up")
        return True

    def _nodes_seen(self, node: ClusterNode | None = None) -> dict[int, dict[str, Any]]:
        """CLUSTER NODES as a live node sees it, by port."""
        client = (node or self.alive()[0]).client()
        seen: dict[str, dict[str, Any]] = client.execute_command("CLUSTER NODES")  # type: ignore[no-untyped-call]
        return {int(address.rsplit(":", 1)[1]): found for address, found in seen.items()}

    def _node(self, port: int) -> ClusterNode:
        return next(n for n in self.nodes if n.port == port)

    def masters(self) -> list[ClusterNode]:
        """The live masters that hold slots."""
        return [
            self._node(port)
            for port, node in self._nodes_seen().items()
            if "master" in node["flags"] and "fail" not in node["flags"] and node["slots"]
        ]

    def master_of(self, key: str) -> ClusterNode:
        slot = redis.crc.key_slot(key.encode())
        for port, node in self._nodes_seen().items():
            serving = "master" in node["flags"] and "fail" not in node["flags"]
            if serving and any(int(span[0]) <= slot <= int(span[-1]) for span in node["slots"]):
                return self._node(port)
        raise LookupError(f"no live master holds slot {slot}")

    def replica_of(self, master: ClusterNode) -> ClusterNode:
        seen = self._nodes_seen()
        master_id = seen[master.port]["node_id"]
        for port, node in seen.items():
            if node["master_id"] == master_id and "fail" not in node["flags"]:
                return self._node(port)
        raise LookupError(f"no replica of {master.name}")

    def flush(self) -> None:
        for node in self.masters():
            node.client().flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
    """``gunicorn -c gunicorn.conf.py wsgi:app`` on a free port, as the Procfile runs it;
    with ``tls``, gunicorn serves HTTPS itself (``--certfile``, ``--keyfile``)."""

    def __init__(
        self,
        env: dict[str, str],
        log_dir: Path,
        workers: int = 1,
        config: str = "gunicorn.conf.py",
        tls: TLSFiles | None = None,
    ) -> None:
        self.port = free_port()
        self.config = config
        self.tls = tls
        self.env = {
            **os.environ,
            "QRLOGIN_ACCESS_LOG": "",
            **env,
            "PORT": str(self.port),
            "WEB_CONCURRENCY": str(workers),
        }
        if tls is not None:
            self.env["GUNICORN_CMD_ARGS"] = f"--certfile {tls.cert} --keyfile {tls.key}"
        super().__init__(f"gunicorn on port {self.port}", log_dir / f"gunicorn-{self.port}.log")

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def start(self, prefix: tuple[str, ...] = ()) -> Self:
        """Start it (behind ``prefix``, a command that runs it: ``prlimit ...``, say)."""
        argv = [*prefix, sys.executable, "-m", "gunicorn", "-c", self.config, "wsgi:app"]
        self.spawn(argv, self.env)
        ca = self.tls.ca if self.tls else None
        self.wait_until(lambda: http_answers(self.url + "/healthz", ca))
        return self

    def terminate(self) -> float:
        """SIGTERM the master; the seconds until it exited."""
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(6 * STOP_S * PATIENCE)
        return time.monotonic() - started
