"""Bodies as gunicorn hands them over: chunked, and slow."""

from __future__ import annotations

import json
import socket

import pytest

from tests.conftest import StartService
from tests.live import margin

pytestmark = pytest.mark.slow


def post_chunked(port: int, path: str, body: bytes) -> bytes:
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 4096]), body[i : i + 4096])
        for i in range(0, len(body), 4096)
    )
    with socket.create_connection(("127.0.0.1", port), timeout=margin(30)) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
            + chunks
            + b"0\r\n\r\n"
        )
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize(("pad", "status"), [(100, b"201"), (20_000, b"413")])
def test_chunked_bodies_are_read_whole_or_refused(
    start_service: StartService, pad: int, status: bytes
) -> None:
    service = start_service()
    body = json.dumps({"platform": "web", "pad": "x" * pad}).encode()
    answer = post_chunked(service.port, "/v1/accounts/qrcode/", body)
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == status, answer[:300]
    expected = "OK" if status == b"201" else "BAD_REQUEST"
    assert json.loads(payload)["code"] == expected


def test_a_body_cut_short_is_refused(start_service: StartService) -> None:
    # The browser announces 100 bytes, sends 20 and closes its side: 400 at once, not a
    # wait for the rest (408) nor a QR made from part of a body.
    service = start_service()
    with socket.create_connection(("127.0.0.1", service.port), timeout=margin(30)) as sock:
        sock.sendall(
            b"POST /v1/accounts/qrcode/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
            b'{"platform": "web"} '
        )
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.split()[1] == b"400", answer[:300]
    assert json.loads(payload)["code"] == "BAD_REQUEST"
