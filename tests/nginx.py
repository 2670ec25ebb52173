"""A real nginx (Debian's package) in front of a service, as an operator deploys it."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from qrlogin.testing import Nginx

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
