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
 * baseUrl (where the service is; default: where this script came from),
 * share: true (default: the tabs of a browser share one stream) | false,
 * appLink: "auto" (default: offer "Open in the app" on a phone) | true | false,
 * appUrl(link) (what "Open in the app" opens; default: the app link itself),
 * locale: the widget's language, "en" or "zh-CN" (default: the page's <html lang>, else
 * the browser's language; a language it does not have is English).
 * mount() returns {refresh(), stop()}; after success or stop() no timer, stream or
 * request of it is left running.
 *
 * Many tabs: where the browser has Web Locks and BroadcastChannel, one tab holds a
 * single stream (/v1/accounts/qrcode/events?ids=...) for the QR codes of every tab and
 * passes each event on; when it closes, another tab takes over, and the new stream
 * starts with each code's state, so no event is lost. Elsewhere each tab streams its
 * own code, and the long poll remains the fallback.
 *
 * After login: QRLogin.watchSession({onEnd(session)}) calls onEnd once the session
 * ends (logged out here or from the phone), through one stream for all the browser's
 * tabs; QRLogin.logout() ends it.
 */
(function (global) {
  "use strict";

  var scriptBase = (function () {
    var script = document.currentScript;
    if (!script || !script.src) return "";
    return script.src.replace(/\/static\/qrlogin\.js(\?.*)?$/, "");
  })();

  // The widget's words, by language: English, and Simplified Chinese (the product's
  // origin). A word missing from a language is said in English.
  var CATALOGUE = {
    en: {
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
      openApp: "Open in the app",
      expiredRefresh: "QR expired, click to refresh",
      newCode: "Get a new QR code",
    },
    zh: {
      loading: "\u6b63\u5728\u83b7\u53d6\u4e8c\u7ef4\u7801\u2026",
      QRCODE_WAIT: "\u8bf7\u7528\u5e94\u7528\u626b\u63cf\u4e8c\u7ef4\u7801\u767b\u5f55\u3002",
      QRCODE_SCANNED: "\u5df2\u626b\u63cf\u3002\u8bf7\u5728\u624b\u673a\u4e0a\u786e\u8ba4\u767b\u5f55\u3002",
      QRCODE_SUCCESS: "\u5df2\u786e\u8ba4\uff0c\u6b63\u5728\u767b\u5f55\u2026",
      QRCODE_CANCEL: "\u5df2\u5728\u624b\u673a\u4e0a\u53d6\u6d88\u767b\u5f55\u3002",
      QRCODE_EXPIRE: "\u4e8c\u7ef4\u7801\u5df2\u8fc7\u671f\u3002",
      replaced: "\u6b64\u4e8c\u7ef4\u7801\u5df2\u88ab\u65b0\u7684\u4e8c\u7ef4\u7801\u53d6\u4ee3\u3002",
      used: "\u6b64\u4e8c\u7ef4\u7801\u5df2\u88ab\u4f7f\u7528\u3002",
      verify_failed: "\u624b\u673a\u4e0a\u8f93\u5165\u7684\u6570\u5b57\u4e0d\u5339\u914d\u3002",
      error: "\u51fa\u9519\u4e86\uff0c\u8bf7\u91cd\u8bd5\u3002",
      offline: "\u65e0\u6cd5\u8fde\u63a5\u767b\u5f55\u670d\u52a1\uff0c\u6b63\u5728\u91cd\u8bd5\u2026",
      openApp: "\u5728\u5e94\u7528\u4e2d\u6253\u5f00",
      expiredRefresh: "\u4e8c\u7ef4\u7801\u5df2\u8fc7\u671f\uff0c\u70b9\u51fb\u5237\u65b0",
      newCode: "\u83b7\u53d6\u65b0\u7684\u4e8c\u7ef4\u7801",
    },
  };

  // The words for `locale` ("zh-CN", "en-GB", ...): its language's, each missing one in
  // English. Default: the page's <html lang>, else the browser's language.
  function wordsFor(locale) {
    var wanted = (locale || document.documentElement.lang ||
      (global.navigator && global.navigator.language) || "en").toLowerCase().split("-")[0];
    var chosen = CATALOGUE[wanted] || {};
    var words = {};
    Object.keys(CATALOGUE.en).forEach(function (key) { words[key] = chosen[key] || CATALOGUE.en[key]; });
    return words;
  }
  var FINAL = { QRCODE_SUCCESS: 1, QRCODE_CANCEL: 1, QRCODE_EXPIRE: 1, QRCODE_ERROR: 1 };
  // How long an EventSource may take to deliver its first event before the poll takes over (ms).
  var SSE_OPEN_TIMEOUT_MS = 5000;
  var LONG_POLL_S = 25;

  // ---- Sharing one connection between the tabs of a browser ----------------------------

  function canShare() {
    var locks = global.navigator && global.navigator.locks;
    return typeof global.EventSource === "function" && typeof global.BroadcastChannel === "function" &&
      !!locks && typeof locks.request === "function";
  }

  // One stream for many subscribers across tabs. The tab that holds the Web Lock named
  // after `name` opens the stream that `url(keys)` names for the keys every tab wants,
  // and relays each event on a BroadcastChannel; `keyOf(type, data)` tells whose an
  // event is (null: everyone's), `done(type, data)` whether that key needs no more.
  function Relay(name, url, keyOf, done) {
    var channel = new BroadcastChannel(name);
    var mine = {};      // key -> handler(type, data), this tab's
    var wanted = {};    // the leader's: every tab's keys
    var leader = false, source = null, opened = "", pending = false;
    this.leading = function () { return leader; };

    function deliver(msg) {
      var key = msg.key;
      Object.keys(mine).forEach(function (k) {
        if (key === null || k === key) mine[k](msg.type, msg.data);
      });
    }
    function relay(msg) { channel.postMessage(msg); deliver(msg); }
    function close() { if (source) { source.close(); source = null; } opened = ""; }
    function onEvent(type) {
      return function (event) {
        var data = JSON.parse(event.data);
        var key = keyOf(type, data);
        if (key !== null && done(type, data)) delete wanted[key];
        relay({ type: type, key: key, data: data });
        if (!Object.keys(wanted).length) close();
      };
    }
    function open() {
      // In a microtask, not a timer: a background tab's timers are throttled.
      if (pending) return;
      pending = true;
      Promise.resolve().then(function () {
        pending = false;
        var keys = Object.keys(wanted).sort();
        if (!leader || (source && keys.join(",") === opened)) return;
        close();
        if (!keys.length) return;
        opened = keys.join(",");
        source = new EventSource(url(keys), { withCredentials: true });
        ["status", "gone", "session"].forEach(function (type) {
          source.addEventListener(type, onEvent(type));
        });
        var current = source;
        source.onerror = function () {
          // Closed for good (an error answer, 204): every tab falls back on its own. A
          // tab that is leaving closes it too: then the next tab takes over instead.
          if (current.readyState === EventSource.CLOSED && current === source && !leaving) {
            close();
            relay({ type: "closed", key: null, data: null });
            wanted = {};
          }
        };
      });
    }
    channel.onmessage = function (event) {
      var msg = event.data || {};
      if (msg.type === "want") { if (leader) { wanted[msg.key] = true; open(); } }
      else if (msg.type === "drop") { if (leader) delete wanted[msg.key]; }
      else if (msg.type === "who") Object.keys(mine).forEach(function (k) { channel.postMessage({ type: "want", key: k }); });
      else deliver(msg);
    };
    global.navigator.locks.request(name, function () {
      leader = true;
      Object.keys(mine).forEach(function (k) { wanted[k] = true; });
      channel.postMessage({ type: "who" });
      open();
      return new Promise(function () {});  // held for as long as this tab lives
    });
    this.watch = function (key, handler) {
      mine[key] = handler;
      if (leader) { wanted[key] = true; open(); } else channel.postMessage({ type: "want", key: key });
      return function unwatch() {
        if (mine[key] !== handler) return;
        delete mine[key];
        if (leader) delete wanted[key]; else channel.postMessage({ type: "drop", key: key });
      };
    };
  }

  var relays = {};
  var leaving = false;
  // Navigating away closes the streams before "pagehide": "beforeunload" comes first.
  global.addEventListener("beforeunload", function () { leaving = true; });
  global.addEventListener("pagehide", function () { leaving = true; });
  global.addEventListener("pageshow", function () { leaving = false; });
  function relayFor(kind, base) {
    var name = "qrlogin " + kind + " " + base;
    if (!relays[name]) {
      relays[name] = kind === "qr"
        ? new Relay(name, function (ids) { return base + "/v1/accounts/qrcode/events?ids=" + ids.join(","); },
            function (type, data) { return data.id; },
            function (type, data) { return type === "gone" || !!FINAL[data.status]; })
        : new Relay(name, function () { return base + "/v1/passport/session/events"; },
            function () { return "session"; },
            function (type, data) { return data.status === "ended"; });
    }
    return relays[name];
  }

  // Creating codes one tab at a time: a fresh browser's first answer sets its binding
  // cookie, and a second tab's request must carry that cookie, not race it.
  // How often, and at most how long between tries, a "not now" answer is asked again.
  var RETRIES = 4, RETRY_CAP_S = 10;

  function oneAtATime(base, fn) {
    var locks = global.navigator && global.navigator.locks;
    if (!locks || typeof locks.request !== "function") return fn();
    return locks.request("qrlogin create " + base, fn);
  }

  function onPhone() {
    var coarse = global.matchMedia && global.matchMedia("(pointer: coarse)").matches;
    return /Android|iPhone|iPad|iPod|Mobile/i.test(global.navigator.userAgent) || (coarse && global.innerWidth < 800);
  }

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
    var sharing = options.share !== false && canShare();
    var appLink = options.appLink === undefined ? "auto" : options.appLink;
    var appUrl = options.appUrl || function (link) { return link; };
    var TEXT = wordsFor(options.locale);

    // The widget.
    root.classList.add("qrlogin");
    root.innerHTML = "";
    var figure = el("div", "qrlogin-figure");
    var img = el("img", "qrlogin-qr");
    img.alt = "QR code for logging in";
    img.width = 240;
    img.height = 240;
    var overlay = el("button", "qrlogin-refresh", TEXT.expiredRefresh);
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
    var openApp = el("a", "qrlogin-open-app", TEXT.openApp);
    openApp.target = "_blank";
    openApp.rel = "noopener";
    openApp.hidden = true;
    [figure, countdown, scanner, code, status, openApp].forEach(function (n) { root.appendChild(n); });

    var state = { qr: null, status: null, version: 0, source: null, unwatch: null, timers: [], aborts: [],
      stopped: false, generation: 0, renewed: 0 };

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
      if (state.unwatch) { state.unwatch(); state.unwatch = null; }
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

    // An answer that says "not now" (503: the service cannot reach its store, or Redis
    // refused it a connection; 429: slow down) is asked again after its Retry-After, with
    // jitter so that many pages do not come back at once, a few times.
    function retrying(call) {
      var tries = 0;
      function attempt() {
        return call().then(function (env) {
          var notNow = env.httpStatus === 503 || env.httpStatus === 429;
          if (!notNow || tries >= RETRIES || state.stopped) return env;
          tries += 1;
          if (env.httpStatus === 503) say(TEXT.offline);
          var seconds = Math.min(env.retryAfter || 1, RETRY_CAP_S) * (0.5 + Math.random());
          return new Promise(function (resolve) { later(resolve, seconds * 1000); }).then(attempt);
        });
      }
      return attempt();
    }

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
      overlay.textContent = state.status === "QRCODE_EXPIRE" ? TEXT.expiredRefresh : TEXT.newCode;
      overlay.hidden = false;
      countdown.textContent = "";
      img.classList.add("qrlogin-dim");
    }

    function show(data) {
      if (state.stopped) return;
      if (data.version) {
        if (data.version <= state.version) return;  // seen already (a shared stream restarts)
        state.version = data.version;
      }
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
      retrying(function () {
        return api("/v1/passport/guest", { code: state.qr.id });
      }).then(function (env) {
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

    function listenShared(generation) {
      root.setAttribute("data-transport", "shared");
      var heard = false;
      var fallback = later(function () {
        if (!heard && generation === state.generation) { state.unwatch(); state.unwatch = null; poll(generation); }
      }, SSE_OPEN_TIMEOUT_MS);
      state.unwatch = relayFor("qr", base).watch(state.qr.id, function (type, data) {
        if (generation !== state.generation || state.stopped) return;
        heard = true;
        clearTimeout(fallback);
        if (type === "status") show(data);
        else if (type === "gone" && data.code === "QRCODE_FORBIDDEN" && state.renewed < 2) {
          // The browser's binding changed under this code (cookies cleared, say): a new one.
          state.renewed += 1;
          create();
        } else if (type === "gone") offerRefresh(TEXT.error);
        else if (type === "closed") {
          state.unwatch();
          state.unwatch = null;
          if (!FINAL[state.status]) poll(generation);
        }
      });
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
          } else if (env.httpStatus === 403 && state.renewed < 2) {
            // Not this browser's code any more (another tab's first code set the binding
            // cookie, say): a new one.
            state.renewed += 1;
            create();
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
      state.version = 0;
      overlay.hidden = true;
      scanner.hidden = true;
      code.hidden = true;
      img.classList.remove("qrlogin-dim");
      say(TEXT.loading);
      var body = { platform: options.platform };
      if (previous) body.code = previous;
      retrying(function () {
        return oneAtATime(base, function () { return api("/v1/accounts/qrcode/", body); });
      }).then(function (env) {
        if (generation !== state.generation) return;
        if (env.code !== "OK") { offerRefresh(env.msg || TEXT.error); return; }
        state.qr = env.data;
        img.src = "data:image/png;base64," + env.data.png;
        root.setAttribute("data-qr-id", env.data.id);
        openApp.hidden = !(appLink === true || (appLink === "auto" && onPhone()));
        openApp.href = appUrl(env.data.app_link);
        startCountdown(env.data.expire);
        show({ status: env.data.status, expire: env.data.expire });
        var sse = typeof global.EventSource === "function";
        if (wanted === "poll" || (wanted === "auto" && !sse)) poll(generation);
        else if (sharing) listenShared(generation);
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

  function sessionEnded(base, onEnd) {
    // The stream closed for good (204, 401): ask once whether the session is over.
    fetch(base + "/v1/passport/me", { credentials: "include" }).then(function (response) {
      if (response.status === 401) {
        return response.json().then(function (env) { onEnd((env && env.data) || null); });
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
    var stopped = false, source = null, timer = null, unwatch = null;
    function stop() {
      stopped = true;
      if (source) { source.close(); source = null; }
      if (timer) { clearInterval(timer); timer = null; }
      if (unwatch) { unwatch(); unwatch = null; }
    }
    function end(session) { if (!stopped) { stop(); onEnd(session); } }
    if (options.share !== false && canShare()) {
      // One session stream for all the browser's tabs (the key "session").
      unwatch = relayFor("session", base).watch("session", function (type, data) {
        if (type === "session" && data.status === "ended") end(data);
        else if (type === "closed") sessionEnded(base, end);
      });
      return { stop: stop };
    }
    if (typeof global.EventSource === "function") {
      source = new EventSource(base + "/v1/passport/session/events", { withCredentials: true });
      source.addEventListener("session", function (event) {
        var data = JSON.parse(event.data);
        if (data.status === "ended") end(data);
      });
      source.onerror = function () {
        if (source && source.readyState === EventSource.CLOSED) sessionEnded(base, end);
      };
    } else {
      timer = setInterval(function () { sessionEnded(base, end); }, SESSION_POLL_MS);
    }
    return { stop: stop };
  }

  // End the page's session (and clear its cookie). Resolves with the envelope.
  function logout(options) {
    var base = ((options && options.baseUrl) || scriptBase || "").replace(/\/$/, "");
    return fetch(base + "/v1/passport/logout", { method: "POST", credentials: "include" })
      .then(function (response) { return response.json(); });
  }

  // Which shared streams this tab holds for the browser ("qr", "session"): for debugging.
  function sharing() {
    return Object.keys(relays).filter(function (name) { return relays[name].leading(); })
      .map(function (name) { return name.split(" ")[1]; });
  }

  global.QRLogin = { mount: mount, watchSession: watchSession, logout: logout, sharing: sharing, version: "1.2.0" };
})(window);
