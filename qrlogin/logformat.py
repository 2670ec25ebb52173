"""Log line formats that gunicorn's master may load too: nothing here imports Flask,
redis or gevent (the master loads its logger class before any worker patched the
standard library for gevent)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

#: Where the request's id is kept in the WSGI environ, for the access log.
ENVIRON_KEY = "qrlogin.request_id"
#: Attributes every ``LogRecord`` has; anything else on a record is a field of its own.
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request_id, any fields the
    record was given (``extra=``), and the traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and name not in line:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str, ensure_ascii=False)
