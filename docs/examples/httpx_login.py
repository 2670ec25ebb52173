"""A login watched from Python with httpx and httpx-sse.

    pip install httpx httpx-sse
    python httpx_login.py http://127.0.0.1:5000

Outside a browser, the client keeps the binding cookie itself: one ``httpx.Client``
keeps it in its cookie jar from the create call to the stream and the redemption.
It prints the QR's content (show it, or scan it with the /m stand-in), then each
status, and redeems the login once the phone confirms.
"""

from __future__ import annotations

import json
import sys

import httpx
from httpx_sse import connect_sse

FINAL = {"QRCODE_SUCCESS", "QRCODE_CANCEL", "QRCODE_EXPIRE", "QRCODE_ERROR"}


def main(base: str) -> None:
    # No read timeout on the stream: it sends a heartbeat comment every 15 s.
    with httpx.Client(base_url=base, timeout=httpx.Timeout(10, read=None)) as client:
        qr = client.post("/v1/accounts/qrcode/", json={"platform": "httpx"}).json()["data"]
        print("qr", qr["id"], flush=True)
        print("content", qr["content"], flush=True)
        status = ""
        with connect_sse(client, "GET", qr["events"]) as source:
            for event in source.iter_sse():
                if event.event != "status":
                    continue
                status = json.loads(event.data)["status"]
                print("status", status, flush=True)
                if status in FINAL:
                    break
        if status == "QRCODE_SUCCESS":
            token = client.post("/v1/passport/guest", json={"code": qr["id"]}).json()["data"]
            me = client.get(
                "/v1/passport/me", headers={"Authorization": f"Bearer {token['token']}"}
            )
            print("logged in as", me.json()["data"]["user"]["name"], flush=True)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:5000")
