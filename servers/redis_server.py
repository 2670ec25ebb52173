"""redis-server of our own: alone, or a sentinel watching one; and the tests' Redis."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import redis

from servers.process import Process, free_port, redis_answers

INSTALL_HINT = (
    "The tests need a real Redis server. Either set REDIS_URL to one that answers, "
    "or install redis-server so it is on PATH (Debian: `apt-get install redis-server`)."
)


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
