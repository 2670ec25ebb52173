// qrlogin as an ES module, with no build step:
//   import { mount } from "https://login.example.com/static/qrlogin.mjs";
// It runs the same script as the <script> tag, and defaults baseUrl to where this
// module came from (a module has no document.currentScript to tell it).
import "./qrlogin.js";

const SDK = window.QRLogin;
const BASE = new URL("..", import.meta.url).href.replace(/\/$/, "");

function withBase(options) {
  return Object.assign({ baseUrl: BASE }, options || {});
}

export function mount(root, options) {
  return SDK.mount(root, withBase(options));
}

export function watchSession(options) {
  return SDK.watchSession(withBase(options));
}

export function logout(options) {
  return SDK.logout(withBase(options));
}

export default { mount, watchSession, logout, version: SDK.version };
