"""What the benchmark's measurements share: sizes, load processes, /proc readings, the run."""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from itsdangerous import URLSafeTimedSerializer

from bench import load
from servers.process import ROOT, Process
from servers.redis_server import RedisServer
from servers.service import Service

SECRET = "bench-only-Jc4Ys8Qe2Nu6Gw3Pa7Xk5Dv9"  # noqa: S105 (a throwaway service)
DOCS = ROOT / "docs"
CTX = multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class Sizes:
    waiting: int
    hold_s: int
    confirm_s: int
    create_s: int
    login_s: int
    restart: int
    pollers: int
    flask_sse_hold_s: int
    restart_wait_s: int
    restart_alternative: bool
    sessions: int
    cluster_waiting: int
    failover_waiting: int


QUICK = Sizes(
    waiting=1500, hold_s=3, confirm_s=2, create_s=3, login_s=3, restart=500, pollers=60,
    flask_sse_hold_s=2, restart_wait_s=4, restart_alternative=False, sessions=1500,
    cluster_waiting=300, failover_waiting=100,
)  # fmt: skip
FULL = Sizes(
    waiting=10000, hold_s=60, confirm_s=10, create_s=15, login_s=15, restart=5000, pollers=300,
    flask_sse_hold_s=20, restart_wait_s=12, restart_alternative=True, sessions=10000,
    cluster_waiting=1000, failover_waiting=300,
)  # fmt: skip


# ---- processes and /proc -------------------------------------------------------------


def run(target: Any, *args: Any) -> Any:
    """Run a load function in its own process; return what it reports."""
    results = CTX.Queue()
    process = CTX.Process(target=target, args=(*args, results), daemon=True)
    process.start()
    answer = results.get(timeout=900)
    process.join(30)
    return answer


class Holders:
    """Load processes each holding a share of the streams."""

    def __init__(
        self,
        port: int,
        cookie: str,
        paths: list[str],
        processes: int = 2,
        sources: list[str] | None = None,
        **kw: Any,
    ) -> None:
        """``sources``: the addresses the processes connect from, in turn."""
        self.results = CTX.Queue()
        self.commands = [CTX.Queue() for _ in range(processes)]
        shares = [paths[i::processes] for i in range(processes)]
        target = load.blind_holder if kw.pop("blind", False) else load.holder
        self.processes = []
        for n, (share, commands) in enumerate(zip(shares, self.commands, strict=True)):
            if sources:
                kw["source"] = sources[n % len(sources)]
            args = (
                (port, share, commands, self.results)
                if target is load.blind_holder
                else (port, cookie, share, commands, self.results)
            )
            process = CTX.Process(target=target, args=args, kwargs=kw, daemon=True)
            process.start()
            self.processes.append(process)

    def opened(self) -> tuple[int, int, float]:
        reports = [self.results.get(timeout=600) for _ in self.processes]
        return (
            sum(r[1] for r in reports),
            sum(r[2] for r in reports),
            max(r[3] for r in reports),
        )

    def ask(self, command: str) -> list[Any]:
        """Send ``command`` to every process; their answers."""
        for commands in self.commands:
            commands.put(command)
        return [self.results.get(timeout=600) for _ in self.processes]

    def finish(self, command: str = "stop") -> list[Any]:
        reports = self.ask(command)
        for process in self.processes:
            process.join(30)
        return reports


def worker_pid(server: Process) -> int:
    """The first worker of a started server (gunicorn's, nginx's)."""
    return server.workers()[0]


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def proc_stat(pid: int) -> tuple[str, int, int]:
    """A process's name, parent pid, and user + system CPU so far in clock ticks, from
    /proc/<pid>/stat (its name is in parentheses and may hold anything)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    name, rest = text[text.index("(") + 1 :].rsplit(") ", 1)
    fields = rest.split()
    return name, int(fields[1]), int(fields[11]) + int(fields[12])


def cpu_ticks(pid: int) -> int:
    """The user + system CPU a process used so far, in clock ticks."""
    return proc_stat(pid)[2]


def cpu_s(pid: int) -> float:
    return cpu_ticks(pid) / os.sysconf("SC_CLK_TCK")


def redis_clients(url: str) -> int:
    return int(redis.Redis.from_url(url).info("clients")["connected_clients"])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def user_token() -> str:
    return str(
        URLSafeTimedSerializer(SECRET, salt="qrlogin.user").dumps({"sub": "bench", "name": "Bench"})
    )


#: QRs outlive the whole run (it holds browsers for minutes before confirming them).
BENCH_ENV = {"SECRET_KEY": SECRET, "QRLOGIN_RATE_LIMITS": "off", "QRLOGIN_QR_TTL": "1800"}


@dataclass
class Bench:
    """One run: its sizes, its Redis, where server logs go, and the services it started."""

    sizes: Sizes
    server: RedisServer
    logs: Path
    token: str = field(default_factory=user_token)
    services: list[Service] = field(default_factory=list)
    moon: Any = None  # the moonshot's sizes (bench.moonshot.MoonSizes), in that mode

    def start(self, workers: int = 1, config: str = "gunicorn.conf.py", **env: str) -> Service:
        settings = {**BENCH_ENV, "REDIS_URL": self.server.url, **env}
        service = Service(settings, self.logs, workers=workers, config=config)
        self.services.append(service)
        return service.start()

    def stop(self) -> None:
        for service in self.services:
            service.stop()


@dataclass(frozen=True)
class Worker:
    """A one-worker service, its worker's pid, and the browser cookie its QRs are bound to."""

    service: Service
    pid: int
    cookie: str


def bind_cookie(port: int) -> str:
    import requests

    response = requests.post(
        f"http://127.0.0.1:{port}/v1/accounts/qrcode/", json={"platform": "bench"}, timeout=10
    )
    return str(response.cookies["qrlogin_bind"])
