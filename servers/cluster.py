"""A local Redis Cluster: three masters with a replica each."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Self

import redis
import redis.crc

from servers.process import PATIENCE, START_S, free_port
from servers.redis_server import INSTALL_HINT, RedisServer, TLSFiles


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
            subprocess.run(
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
