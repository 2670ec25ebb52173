"""Run the service locally with its demo page: ``python app.py``.

It serves with gevent, as production does, so the SSE stream works. Demo mode
is on unless QRLOGIN_DEMO says otherwise; without REDIS_URL the embedded
single-process engine is used (and announced loudly).
"""

from gevent import monkey

monkey.patch_all()

import logging  # noqa: E402 (after patching, as gevent requires)
import os  # noqa: E402
import signal  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

from qrlogin import create_app  # noqa: E402
from qrlogin.config import ServerSettings  # noqa: E402
from qrlogin.keycheck import DEMO_WARNING  # noqa: E402
from qrlogin.services import services  # noqa: E402

log = logging.getLogger("qrlogin.app")


def main() -> None:
    os.environ.setdefault("QRLOGIN_DEMO", "1")
    app = create_app()
    if services(app).settings.demo:
        log.warning(DEMO_WARNING)
    hub = services(app).hub
    hub.start()
    server_settings = ServerSettings.from_env({"PORT": "5000", **os.environ})
    host, port = server_settings.host, server_settings.port
    server = WSGIServer((host, port), app, log=None)

    def stop() -> None:
        hub.shutdown()
        server.stop(timeout=3)

    gevent.signal_handler(signal.SIGTERM, stop)
    gevent.signal_handler(signal.SIGINT, stop)
    log.warning("qrlogin demo on http://%s:%d/ (Ctrl-C stops it)", host, port)
    server.serve_forever()


if __name__ == "__main__":
    main()
