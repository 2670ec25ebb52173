"""The gunicorn worker class of the Procfile: gunicorn's gevent worker, which also lets
the app keep a stream's connection once its response has begun (``qrlogin.parking``).

``gunicorn --worker-class gevent`` still serves the app, with a greenlet per stream.
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.ggevent import GeventWorker


class StreamWorker(GeventWorker):  # type: ignore[misc]
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
