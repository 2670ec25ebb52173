"""gunicorn's own log lines (``logger_class`` in gunicorn.conf.py) in the app's format.

With ``QRLOGIN_LOG_FORMAT=json`` gunicorn's error log is one JSON object a line, as the
app's is, and each access line is an object of named fields with the request's id. With
``text`` gunicorn writes as usual, and the access line ends with the request's id.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from gunicorn.glogging import Logger as GunicornLogger

from qrlogin.config import value_of
from qrlogin.logformat import ENVIRON_KEY, JsonFormatter


def log_format() -> str:
    """``QRLOGIN_LOG_FORMAT``, read as the app reads it."""
    return str(value_of("QRLOGIN_LOG_FORMAT", os.environ))


class Logger(GunicornLogger):  # type: ignore[misc]
    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        self.json = log_format() == "json"
        if self.json:
            for log in (self.error_log, self.access_log):
                for handler in log.handlers:
                    handler.setFormatter(JsonFormatter())

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.json:
            super().access(resp, req, environ, request_time)
            return
        if not self.access_log_enabled:
            return
        status = resp.status.split(None, 1)[0] if isinstance(resp.status, str) else resp.status
        fields = {
            "request_id": environ.get(ENVIRON_KEY, "-"),
            "remote_addr": environ.get("REMOTE_ADDR", "-"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "protocol": environ.get("SERVER_PROTOCOL"),
            "status": int(status),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "user_agent": environ.get("HTTP_USER_AGENT", "-"),
            "referer": environ.get("HTTP_REFERER", "-"),
        }
        self.access_log.log(logging.INFO, "%s %s %s", fields["method"], fields["path"],
                            fields["status"], extra=fields)  # fmt: skip
