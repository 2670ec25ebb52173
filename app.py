"""Run the service locally with its demo page: ``python app.py``.

Demo mode is on unless QRLOGIN_DEMO says otherwise; without REDIS_URL the
embedded single-process engine is used (and announced loudly).
"""

from __future__ import annotations

import os

from qrlogin import create_app


def main() -> None:
    os.environ.setdefault("QRLOGIN_DEMO", "1")
    app = create_app()
    port = int(os.environ.get("PORT", "5000"))
    app.run(host=os.environ.get("HOST", "127.0.0.1"), port=port, threaded=True)


if __name__ == "__main__":
    main()
