"""Choosing a QR stream's transport, and the bytes of a parked stream's response.

The QR stream view describes its stream twice: as the greenlet's body (``qrlogin.waiting``)
and as a ``Parkable`` left in the WSGI environ. This middleware chooses: under the stream
worker (``qrlogin.worker``), on a plain TCP connection, it writes the response head and
the opening itself and parks the connection in the process's lot (``qrlogin.lot``),
where no greenlet holds it; anywhere else (``python app.py``, gunicorn's stock gevent
worker, TLS in gunicorn) the greenlet serves the body as usual.

The bytes on the wire are those of the greenlet's stream (``qrlogin.sse``): chunked for
HTTP/1.1, to the close for HTTP/1.0, and ``Connection: close`` either way, since the
connection is never handed back to the server for another request.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from qrlogin.holds import Held
from qrlogin.models import Snapshot
from qrlogin.sse import HEARTBEAT
from qrlogin.waiting import is_tls

if TYPE_CHECKING:
    from qrlogin.lot import Lot

#: What the app returns to the worker for a parked stream: the connection is not its.
PARKED = object()
#: Where the stream view leaves its ``Parkable`` for the middleware.
ENVIRON_KEY = "qrlogin.parkable"
#: The end of a chunked body.
LAST_CHUNK = b"0\r\n\r\n"
#: Headers the lot writes itself.
_HOP = frozenset({"connection", "transfer-encoding", "content-length"})

#: Whether this process runs under the stream worker (set once, by the worker).
_under_stream_worker: list[bool] = []


def enable() -> None:
    """Called by the stream worker: this process hands parkable streams to the lot."""
    _under_stream_worker.append(True)


def possible(environ: dict[str, Any]) -> bool:
    """Whether this request's stream can be parked: under the stream worker, a GET with
    the connection at hand, and that connection plain TCP. The lot writes bytes to the
    descriptor itself; on a TLS connection (gunicorn serving ``--certfile``) they must go
    through the TLS layer, so such a stream keeps its greenlet."""
    sock = environ.get("gunicorn.socket")
    return (
        bool(_under_stream_worker)
        and environ.get("REQUEST_METHOD") == "GET"
        and isinstance(sock, socket.socket)
        and not is_tls(sock)
    )


@dataclass(frozen=True, slots=True)
class Parkable:
    """A QR stream as the lot would serve it: the opening to write, the QR and whose it
    is (as ``Store.read`` takes them), and the hold the stream counts against."""

    opening: str
    first: Snapshot
    qr_id: str
    bind: str
    prev: str
    held: Held


def body(data: bytes, chunked: bool) -> bytes:
    """``data`` as the body's next bytes: one chunk, or as it is (HTTP/1.0, to the close)."""
    return b"%x\r\n%b\r\n" % (len(data), data) if chunked else data


#: A heartbeat as each framing writes it.
HEARTBEATS = {chunked: body(HEARTBEAT.encode(), chunked) for chunked in (False, True)}


def head(status: str, headers: list[tuple[str, str]], chunked: bool) -> bytes:
    """A parked stream's response head: the app's status and headers, the framing's."""
    lines = [f"HTTP/1.1 {status}"]
    lines += [f"{name}: {value}" for name, value in headers if name.lower() not in _HOP]
    lines += ["Transfer-Encoding: chunked"] if chunked else []
    lines += ["Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def wsgi(app: Callable[..., Any], lot: Callable[[], Lot]) -> Callable[..., Any]:
    """Wrap ``app``: a 200 response that left a ``Parkable`` in the environ is parked in
    ``lot()`` when this connection allows it (``possible``), and the worker is told so."""

    def parking_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        if not possible(environ):
            return app(environ, start_response)
        held: list[tuple[str, list[tuple[str, str]]]] = []

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if ENVIRON_KEY in environ and status.startswith("200") and exc_info is None:
                held.append((status, headers))
                return _no_write
            environ.pop(ENVIRON_KEY, None)
            return start_response(status, headers, exc_info)

        response = app(environ, hold)
        parkable = environ.pop(ENVIRON_KEY, None)
        if not held or not isinstance(parkable, Parkable):
            return response
        status, headers = held[0]
        chunked = environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
        lot().park(environ["gunicorn.socket"], head(status, headers, chunked), parkable, chunked)
        return PARKED

    return parking_app


def _no_write(data: bytes) -> None:
    raise RuntimeError("a parked stream's body is written by the lot")
