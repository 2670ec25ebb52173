"""The service as the Procfile runs it: gunicorn + gevent on a free port."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Self

from servers.process import PATIENCE, STOP_S, Process, free_port, http_answers
from servers.redis_server import TLSFiles


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
