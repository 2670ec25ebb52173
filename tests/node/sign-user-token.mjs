// A main application on Node signing a user token for the phone with jose: an ES256 key
// pair of its own, the public half published as a JWKS. Prints {"jwks": ..., "token": ...}.
// Usage: node sign-user-token.mjs '<claims as JSON>'
import { SignJWT, exportJWK, generateKeyPair } from "jose";

const claims = JSON.parse(process.argv[2]);
const { publicKey, privateKey } = await generateKeyPair("ES256", { extractable: true });
const jwk = { ...(await exportJWK(publicKey)), kid: "node-1", alg: "ES256", use: "sig" };
const token = await new SignJWT(claims)
  .setProtectedHeader({ alg: "ES256", kid: "node-1" })
  .sign(privateKey);
process.stdout.write(JSON.stringify({ jwks: { keys: [jwk] }, token }));
