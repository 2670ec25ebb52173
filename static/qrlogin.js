/*
 * qrlogin.js: QR-code login for a web page, with no build step and no dependency.
 *
 *   <div id="login"></div>
 *   <script src="https://login.example.com/static/qrlogin.js"></script>
 *   <script>
 *     QRLogin.mount(document.getElementById("login"), {
 *       platform: "web", onSuccess: ({token, user}) => location.assign("/app") });
 *   </script>
 *
 * Options: platform (required), onSuccess({token, user}), onStatus(status, data),
 * transport: "auto" (SSE, falling back to the long poll by itself) | "sse" | "poll",
 * baseUrl (where the service is; default: where this script came from).
 * mount() returns {refresh(), stop()}; after success or stop() no timer, stream or
 * request of it is left running.
 *
 * After login: QRLogin.watchSession({onEnd(session)}) calls onEnd once the session
 * ends (logged out here or from the phone); QRLogin.logout() ends it.
 */
(function (global) {
  "use strict";

  var scriptBase = (function () {
    var script = document.currentScript;
    if (!script || !script.src) return "";
    return script.src.replace(/\/static\/qrlogin\.js(\?.*)?$/, "");
  })();

  var TEXT = {
    loading: "Getting a QR code\u2026",
    QRCODE_WAIT: "Scan the QR code with the app to log in.",
    QRCODE_SCANNED: "Scanned. Confirm the login on your phone.",
    QRCODE_SUCCESS: "Confirmed. Logging you in\u2026",
    QRCODE_CANCEL: "The login was cancelled on the phone.",
    QRCODE_EXPIRE: "The QR code expired.",
    replaced: "This QR code was replaced by a newer one.",
    used: "This QR code was already used.",
    verify_failed: "The code typed on the phone did not match.",
    error: "Something went wrong. Please try again.",
    offline: "Cannot reach the login service. Retrying\u2026",
  };
  var FINAL = { QRCODE_SUCCESS: 1, QRCODE_CANCEL: 1, QRCODE_EXPIRE: 1, QRCODE_ERROR: 1 };
  // How long an EventSource may take to deliver its first event before the poll takes over (ms).
  var SSE_OPEN_TIMEOUT_MS = 5000;
  var LONG_POLL_S = 25;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text) node.textContent = text;
    return node;
  }

  function mount(root, options) {
    options = options || {};
    if (!root) throw new Error("QRLogin.mount: no element");
    if (!options.platform) throw new Error("QRLogin.mount: platform is required");
    var base = (options.baseUrl || scriptBase || "").replace(/\/$/, "");
    var wanted = options.transport || "auto";

    // The widget.
    root.classList.add("qrlogin");
    root.innerHTML = "";
    var figure = el("div", "qrlogin-figure");
    var img = el("img", "qrlogin-qr");
    img.alt = "QR code for logging in";
    img.width = 240;
    img.height = 240;
    var overlay = el("button", "qrlogin-refresh", "QR expired, click to refresh");
    overlay.type = "button";
    overlay.hidden = true;
    figure.appendChild(img);
    figure.appendChild(overlay);
    var countdown = el("div", "qrlogin-countdown");
    countdown.setAttribute("aria-hidden", "true");
    var scanner = el("div", "qrlogin-scanner");
    scanner.hidden = true;
    var avatar = el("img", "qrlogin-avatar");
    avatar.alt = "";
    var who = el("span", "qrlogin-name");
    scanner.appendChild(avatar);
    scanner.appendChild(who);
    var code = el("div", "qrlogin-code");
    code.hidden = true;
    var status = el("p", "qrlogin-status", TEXT.loading);
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    [figure, countdown, scanner, code, status].forEach(function (n) { root.appendChild(n); });

    var state = { qr: null, status: null, source: null, timers: [], aborts: [], stopped: false, generation: 0 };

    function later(fn, ms) {
      var id = setTimeout(function () {
        state.timers = state.timers.filter(function (t) { return t !== id; });
        fn();
      }, ms);
      state.timers.push(id);
      return id;
    }

    function clearAll() {
      state.timers.forEach(function (t) { clearTimeout(t); clearInterval(t); });
      state.timers = [];
      state.aborts.forEach(function (a) { a.abort(); });
      state.aborts = [];
      if (state.source) { state.source.close(); state.source = null; }
    }

    function api(path, body) {
      var abort = new AbortController();
      state.aborts.push(abort);
      return fetch(base + path, {
        method: "POST",
        credentials: "include",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
        signal: abort.signal,
      }).then(function (response) {
        return response.json().catch(function () { return { code: "BAD_RESPONSE", msg: "" }; })
          .then(function (envelope) {
            envelope.httpStatus = response.status;
            envelope.retryAfter = Number(response.headers.get("Retry-After")) || 0;
            return envelope;
          });
      }).finally(function () {
        state.aborts = state.aborts.filter(function (a) { return a !== abort; });
      });
    }

    function say(text) { status.textContent = text; }

    function startCountdown(expire) {
      var timer;
      function tick() {
        var left = Math.max(0, expire - Math.floor(Date.now() / 1000));
        countdown.textContent = Math.floor(left / 60) + ":" + String(left % 60).padStart(2, "0");
        if (left <= 0) clearInterval(timer);
      }
      tick();
      timer = setInterval(tick, 1000);
      state.timers.push(timer);
    }

    function offerRefresh(text) {
      clearAll();
      root.setAttribute("data-status", state.status || "");
      say(text);
      overlay.textContent = state.status === "QRCODE_EXPIRE" ? "QR expired, click to refresh" : "Get a new QR code";
      overlay.hidden = false;
      countdown.textContent = "";
      img.classList.add("qrlogin-dim");
    }

    function show(data) {
      if (state.stopped) return;
      var changed = data.status !== state.status;
      state.status = data.status;
      root.setAttribute("data-status", data.status);
      if (data.user) {
        who.textContent = data.user.name;
        if (data.user.avatar) { avatar.src = data.user.avatar; avatar.hidden = false; } else { avatar.hidden = true; }
        scanner.hidden = false;
      }
      code.hidden = !data.verify_code;
      if (data.verify_code) code.textContent = "Type " + data.verify_code + " on your phone";
      if (changed && options.onStatus) options.onStatus(data.status, data);
      if (data.status === "QRCODE_WAIT" || data.status === "QRCODE_SCANNED") {
        if (changed) say(TEXT[data.status]);
      } else if (data.status === "QRCODE_SUCCESS") {
        say(TEXT.QRCODE_SUCCESS);
        if (data.token) finish(data); else redeem();
      } else if (data.status === "QRCODE_ERROR") {
        offerRefresh(TEXT[data.reason] || TEXT.error);
      } else if (FINAL[data.status]) {
        offerRefresh(TEXT[data.status]);
      }
    }

    function finish(data) {
      clearAll();
      state.stopped = true;
      countdown.textContent = "";
      if (options.onSuccess) options.onSuccess({ token: data.token, user: data.user });
    }

    function redeem() {
      clearAll();
      api("/v1/passport/guest", { code: state.qr.id }).then(function (env) {
        if (env.code === "OK" && env.data.token) finish(env.data);
        else if (env.code === "OK") show(env.data);
        else offerRefresh(env.msg || TEXT.error);
      }).catch(function (err) {
        if (err.name !== "AbortError") offerRefresh(TEXT.error);
      });
    }

    function listenSSE(generation) {
      root.setAttribute("data-transport", "sse");
      var source = new EventSource(base + state.qr.events, { withCredentials: true });
      state.source = source;
      var heard = false;
      var fallback = later(function () {
        if (!heard && generation === state.generation) { source.close(); state.source = null; poll(generation); }
      }, SSE_OPEN_TIMEOUT_MS);
      source.addEventListener("status", function (event) {
        heard = true;
        clearTimeout(fallback);
        var data = JSON.parse(event.data);
        if (FINAL[data.status]) { source.close(); state.source = null; }
        show(data);
      });
      source.onerror = function () {
        // EventSource retries by itself; once it gives up (CLOSED), or when it never
        // worked, the long poll takes over.
        if (generation !== state.generation || state.stopped) return;
        if (source.readyState === EventSource.CLOSED || !heard) {
          clearTimeout(fallback);
          source.close();
          state.source = null;
          if (!FINAL[state.status]) poll(generation);
        }
      };
    }

    function poll(generation) {
      root.setAttribute("data-transport", "poll");
      function next(delayMs) {
        later(function () { once(); }, delayMs);
      }
      function once() {
        if (generation !== state.generation || state.stopped) return;
        var body = { code: state.qr.id, wait: LONG_POLL_S };
        if (state.status) body.since = state.status;
        api("/v1/passport/guest", body).then(function (env) {
          if (generation !== state.generation) return;
          if (env.code === "OK") {
            show(env.data);
            if (!FINAL[env.data.status]) next(0);
          } else if (env.httpStatus === 429) {
            next((env.retryAfter || state.qr.interval) * 1000);
          } else if (env.httpStatus >= 500) {
            say(TEXT.offline);
            next(state.qr.interval * 1000);
          } else {
            offerRefresh(env.msg || TEXT.error);
          }
        }).catch(function (err) {
          if (err.name === "AbortError") return;
          say(TEXT.offline);
          next(state.qr.interval * 1000);
        });
      }
      once();
    }

    function create() {
      clearAll();
      state.generation += 1;
      state.stopped = false;
      var generation = state.generation;
      var previous = state.qr && state.qr.id;
      state.status = null;
      overlay.hidden = true;
      scanner.hidden = true;
      code.hidden = true;
      img.classList.remove("qrlogin-dim");
      say(TEXT.loading);
      var body = { platform: options.platform };
      if (previous) body.code = previous;
      api("/v1/accounts/qrcode/", body).then(function (env) {
        if (generation !== state.generation) return;
        if (env.code !== "OK") { offerRefresh(env.msg || TEXT.error); return; }
        state.qr = env.data;
        img.src = "data:image/png;base64," + env.data.png;
        root.setAttribute("data-qr-id", env.data.id);
        startCountdown(env.data.expire);
        show({ status: env.data.status, expire: env.data.expire });
        var sse = typeof global.EventSource === "function";
        if (wanted === "poll" || (wanted === "auto" && !sse)) poll(generation);
        else listenSSE(generation);
      }).catch(function (err) {
        if (err.name !== "AbortError") offerRefresh(TEXT.offline);
      });
    }

    overlay.addEventListener("click", create);
    create();

    return {
      refresh: create,
      stop: function () { state.stopped = true; state.generation += 1; clearAll(); },
    };
  }

  // How often to ask whether a session is alive where there is no EventSource (ms).
  var SESSION_POLL_MS = 10000;

  function sessionEnded(base, onEnd, done) {
    // The stream closed for good (204, 401): ask once whether the session is over.
    fetch(base + "/v1/passport/me", { credentials: "include" }).then(function (response) {
      if (response.status === 401) {
        return response.json().then(function (env) { done(); onEnd((env && env.data) || null); });
      }
      return null;
    }).catch(function () { return null; });
  }

  // Watch the page's login session; onEnd(session) runs once, when it ends (logout,
  // "log out" on the phone, idle, its deadline). Returns {stop()}.
  function watchSession(options) {
    options = options || {};
    var base = (options.baseUrl || scriptBase || "").replace(/\/$/, "");
    var onEnd = options.onEnd || function () {};
    var stopped = false, source = null, timer = null;
    function stop() {
      stopped = true;
      if (source) { source.close(); source = null; }
      if (timer) { clearInterval(timer); timer = null; }
    }
    function end(session) { if (!stopped) { stop(); onEnd(session); } }
    if (typeof global.EventSource === "function") {
      source = new EventSource(base + "/v1/passport/session/events", { withCredentials: true });
      source.addEventListener("session", function (event) {
        var data = JSON.parse(event.data);
        if (data.status === "ended") end(data);
      });
      source.onerror = function () {
        if (source && source.readyState === EventSource.CLOSED) sessionEnded(base, end, function () {});
      };
    } else {
      timer = setInterval(function () { sessionEnded(base, end, function () {}); }, SESSION_POLL_MS);
    }
    return { stop: stop };
  }

  // End the page's session (and clear its cookie). Resolves with the envelope.
  function logout(options) {
    var base = ((options && options.baseUrl) || scriptBase || "").replace(/\/$/, "");
    return fetch(base + "/v1/passport/logout", { method: "POST", credentials: "include" })
      .then(function (response) { return response.json(); });
  }

  global.QRLogin = { mount: mount, watchSession: watchSession, logout: logout, version: "1.1.0" };
})(window);
