"""Debian's nginx with one worker, all its files in its own folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Self

from servers.process import Process, free_port, http_answers

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


#: The lines README.md ("Behind nginx") asks for: the service reads the public host and scheme from
#: these (with QRLOGIN_TRUSTED_PROXIES=1), and streams pass through unbuffered.
DOCUMENTED = """
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-Host $http_host;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_set_header X-Forwarded-Port $server_port;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
"""
#: What a bare proxy_pass sends: the upstream's address as Host, nothing forwarded.
BARE = ""

PROXY = """
    location / {{
      proxy_pass http://{upstream};
{lines}
    }}
"""


class ProxyNginx(Nginx):
    """nginx in front of a service, with ``lines`` in its proxying location."""

    def __init__(self, lines: str, log_dir: Path) -> None:
        super().__init__(log_dir)
        self.lines = lines

    def proxy_to(self, upstream_port: int) -> Self:
        return self.start(PROXY.format(upstream=f"127.0.0.1:{upstream_port}", lines=self.lines))
