// A login watched from Node with the `eventsource` package: outside a browser, the
// client keeps the binding cookie itself (withCredentials does nothing here).
//
//   npm install            (in this folder: eventsource, pinned in package.json)
//   node node_login.mjs http://127.0.0.1:5000
//
// It prints the QR's content (show it, or scan it with the /m stand-in), then each
// status, and redeems the login once the phone confirms.
import { EventSource } from "eventsource";

const base = (process.argv[2] || "http://127.0.0.1:5000").replace(/\/$/, "");
const FINAL = ["QRCODE_SUCCESS", "QRCODE_CANCEL", "QRCODE_EXPIRE", "QRCODE_ERROR"];

async function post(path, body, cookie) {
  const headers = { "Content-Type": "application/json" };
  if (cookie) headers.Cookie = cookie;
  const response = await fetch(base + path, { method: "POST", headers, body: JSON.stringify(body) });
  return { response, envelope: await response.json() };
}

// 1. Ask for a QR. The answer sets the binding cookie: keep its name=value pair.
const created = await post("/v1/accounts/qrcode/", { platform: "node" });
const cookie = created.response.headers.getSetCookie()
  .map((line) => line.split(";")[0])
  .find((pair) => /^(__Host-)?qrlogin_bind=/.test(pair)); // its name over HTTPS: __Host-qrlogin_bind
const qr = created.envelope.data;
console.log(`qr ${qr.id}`);
console.log(`content ${qr.content}`);

// 2. Wait on the stream, sending the cookie with every (re)connection.
const source = new EventSource(base + qr.events, {
  fetch: (input, init) => fetch(input, { ...init, headers: { ...init.headers, Cookie: cookie } }),
});
const status = await new Promise((resolve, reject) => {
  source.addEventListener("status", (event) => {
    const data = JSON.parse(event.data);
    console.log(`status ${data.status}`);
    if (FINAL.includes(data.status)) resolve(data.status);
  });
  source.addEventListener("error", (error) => {
    if (source.readyState === EventSource.CLOSED) reject(error);
  });
});
source.close();

// 3. Redeem once, with the same cookie; the login token is the answer (not printed).
if (status === "QRCODE_SUCCESS") {
  const { envelope } = await post("/v1/passport/guest", { code: qr.id }, cookie);
  const me = await fetch(base + "/v1/passport/me", {
    headers: { Authorization: `Bearer ${envelope.data.token}` },
  }).then((r) => r.json());
  console.log(`logged in as ${me.data.user.name}`);
}
