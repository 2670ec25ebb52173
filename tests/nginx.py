"""A real nginx (Debian's package) in front of a service, as an operator deploys it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Self

from qrlogin.testing import Process, free_port, http_answers

#: The lines README.md ("Behind nginx") asks for: the service reads the public host and scheme from
#: these (with QRLOGIN_TRUSTED_PROXIES=1), and streams pass through unbuffered.
DOCUMENTED = """
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
"""
#: What a bare proxy_pass sends: the upstream's address as Host, nothing forwarded.
BARE = ""

CONFIG = """
daemon off;
{user}
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
{lines}
    }}
  }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if Path(p).exists()), None
    )


class Nginx(Process):
    def __init__(self, lines: str, log_dir: Path) -> None:
        self.port = free_port()
        self.lines = lines
        self.dir = log_dir / f"nginx-{self.port}"
        self.dir.mkdir(parents=True)
        self.config = self.dir / "nginx.conf"
        super().__init__(f"nginx on port {self.port}", self.dir / "error.log")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, upstream_port: int) -> Self:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("the proxy tests need nginx: apt-get install nginx")
        self.config.write_text(
            CONFIG.format(
                user="user root;" if os.geteuid() == 0 else "",
                dir=self.dir,
                port=self.port,
                upstream=upstream_port,
                lines=self.lines,
            )
        )
        self.spawn([binary, "-p", str(self.dir), "-c", str(self.config)])
        self.wait_until(lambda: http_answers(self.url + "/healthz"))
        return self
