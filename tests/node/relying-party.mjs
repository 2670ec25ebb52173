// A relying party written with openid-client (code flow with PKCE), driven line by line
// from the test: it reads JSON commands on stdin and writes JSON answers on stdout, and
// writes each back-channel logout token it receives, verified against the provider's JWKS
// with jose.
// Usage: node relying-party.mjs <issuer> <client_id> <client_secret> <redirect_uri> <backchannel port>
import { createServer } from "node:http";
import { createInterface } from "node:readline";
import * as client from "openid-client";
import { createRemoteJWKSet, jwtVerify } from "jose";

const [issuer, clientId, clientSecret, redirectUri, port] = process.argv.slice(2);
const say = (message) => process.stdout.write(JSON.stringify(message) + "\n");

const config = await client.discovery(new URL(issuer), clientId, clientSecret, undefined, {
  execute: [client.allowInsecureRequests], // the test's provider is on http://127.0.0.1
});
const meta = config.serverMetadata();
const keys = createRemoteJWKSet(new URL(meta.jwks_uri));

// Back-Channel Logout 1.0: a form POST with logout_token; 200 once it is verified.
createServer((req, res) => {
  let body = "";
  req.on("data", (chunk) => (body += chunk));
  req.on("end", async () => {
    try {
      const token = new URLSearchParams(body).get("logout_token");
      const { payload, protectedHeader } = await jwtVerify(token, keys, {
        issuer: meta.issuer, audience: clientId, typ: "logout+jwt",
      });
      if (!payload.events?.["http://schemas.openid.net/event/backchannel-logout"] || payload.nonce) {
        throw new Error("not a logout token");
      }
      say({ backchannel: payload, alg: protectedHeader.alg });
      res.writeHead(200).end();
    } catch (error) {
      say({ backchannel_error: String(error) });
      res.writeHead(400).end();
    }
  });
}).listen(Number(port), "127.0.0.1", () => say({ ready: true }));

let pending = null;
for await (const line of createInterface({ input: process.stdin })) {
  const command = JSON.parse(line);
  try {
    if (command.cmd === "authorize") {
      const verifier = client.randomPKCECodeVerifier();
      pending = { verifier, state: client.randomState(), nonce: client.randomNonce() };
      const url = client.buildAuthorizationUrl(config, {
        redirect_uri: redirectUri, scope: "openid profile", state: pending.state,
        nonce: pending.nonce, code_challenge: await client.calculatePKCECodeChallenge(verifier),
        code_challenge_method: "S256",
      });
      say({ url: url.href });
    } else if (command.cmd === "callback") {
      const tokens = await client.authorizationCodeGrant(config, new URL(command.url), {
        pkceCodeVerifier: pending.verifier, expectedState: pending.state,
        expectedNonce: pending.nonce, idTokenExpected: true,
      });
      const claims = tokens.claims();
      const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
      const logout = client.buildEndSessionUrl(config, {
        id_token_hint: tokens.id_token, post_logout_redirect_uri: redirectUri, state: "bye",
      });
      say({ claims, userinfo, logout: logout.href, refresh: tokens.refresh_token ?? null });
    }
  } catch (error) {
    say({ error: String(error), code: error.code ?? null });
  }
}
