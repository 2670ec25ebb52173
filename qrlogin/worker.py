"""The gunicorn worker class of the Procfile: gunicorn's gevent worker, which also lets
the app keep a stream's connection once its response has begun (``qrlogin.parking``).

``gunicorn --worker-class gevent`` still serves the app, with a greenlet per stream.
"""

from __future__ import annotations

import errno
import time
from typing import Any

from gevent.server import StreamServer
from gunicorn.workers import ggevent
from gunicorn.workers.ggevent import GeventWorker

#: How often a worker out of file descriptors says so (seconds); gevent's server retries
#: its accept with a growing delay of up to a second, each time with a traceback.
DESCRIPTORS_NOTICE_S = 60.0
#: Connections a worker accepts at a turn of its loop, from its own socket.
ACCEPT_BATCH = 16


class StreamWorker(GeventWorker):  # type: ignore[misc]
    def run(self) -> None:
        import gevent

        quiet_descriptor_exhaustion(gevent.get_hub(), self.log)
        if self.cfg.reuse_port:
            ggevent.StreamServer = OwnSocketServer
        super().run()

    def patch(self) -> None:
        super().patch()  # gevent's monkey-patching: only then may qrlogin be imported
        from qrlogin import parking

        parking.enable()

    def is_already_handled(self, respiter: Any) -> bool:
        from qrlogin import parking

        if respiter is parking.PARKED:
            # The lot has the connection: gunicorn must neither answer on it again nor
            # read the next request from it. StopIteration ends its loop for this client.
            raise StopIteration
        return bool(super().is_already_handled(respiter))


class OwnSocketServer(StreamServer):  # type: ignore[misc]
    """gevent's server for a socket this worker alone listens on (``SO_REUSEPORT``).

    With several workers gunicorn has each accept one connection per turn of its loop, so
    that none takes a burst meant for all from a shared socket. A socket of its own has
    no one to share with, and one accept a turn drains it too slowly: under load (turns
    of several milliseconds) new connections wait in the kernel's queue, where admission
    control cannot see them, let alone answer them (docs/BENCHMARKS.md measures it). So
    each turn takes up to ACCEPT_BATCH, a handful rather than gevent's 100, so that a
    burst of openings joins the worker's work a few at a time."""

    @property
    def max_accept(self) -> int:
        return ACCEPT_BATCH

    @max_accept.setter
    def max_accept(self, value: int) -> None:
        """gunicorn's 1 is for a shared socket."""


def quiet_descriptor_exhaustion(hub: Any, log: Any) -> None:
    """An accept that fails for want of file descriptors (EMFILE, ENFILE) is no bug: say
    so in one line, at most once a minute, instead of gevent's traceback a second. The
    server keeps retrying (gevent's backoff); streams past the worker's descriptor budget
    are refused with 503 before it comes to that (``qrlogin.holds``)."""
    show = hub.print_exception
    said = [float("-inf")]

    def print_exception(context: Any, kind: Any, value: Any, tb: Any) -> None:
        if isinstance(value, OSError) and value.errno in (errno.EMFILE, errno.ENFILE):
            now = time.monotonic()
            if now - said[0] >= DESCRIPTORS_NOTICE_S:
                said[0] = now
                log.warning(
                    "this worker has no file descriptor left (%s): new connections wait "
                    "until some close; raise the limit (ulimit -n) or add workers",
                    errno.errorcode[value.errno],
                )
            return
        show(context, kind, value, tb)

    hub.print_exception = print_exception
