// The phone stand-in: sign in, scan (camera or pasted text), see who asks, confirm or cancel.
(function () {
  "use strict";
  var $ = function (id) { return document.getElementById(id); };
  var state = { token: null, qrId: null, client: null, ticker: null, stream: null };

  function announce(text) { $("announce").textContent = text; }

  // The page's strings, in its language (the server puts them in the page); English when
  // one is missing. t("key", {name: ...}) fills its %(name)s.
  var MESSAGES = JSON.parse(($("page-messages") || {}).textContent || "{}");
  function t(key, values) {
    var text = MESSAGES[key] || key;
    return text.replace(/%\((\w+)\)s/g, function (_, name) { return String((values || {})[name]); });
  }

  function show(section) {
    ["signin", "scan", "linked", "confirm"].forEach(function (id) { $(id).hidden = id !== section; });
  }

  // Opened through "Open in the app" (#link=<the app link>): its QR text waits for sign-in.
  function linkedQrText() {
    var link = new URLSearchParams(location.hash.slice(1)).get("link");
    if (!link) return null;
    var query = link.indexOf("?");
    return query < 0 ? null : new URLSearchParams(link.slice(query + 1)).get("qr");
  }

  function signIn(token, name) {
    state.token = token;
    $("signed-in-as").textContent = name;
    show("scan");
    announce(t("signed_in", { name: name }));
    $("sessions").hidden = false;
    listSessions();
    listenForNotices();
    var linked = linkedQrText();
    if (linked) {
      // A link can come from any page: ask before the scan tells that page who you are.
      history.replaceState(null, "", location.pathname);
      show("linked");
      announce(t("link_asks"));
      $("linked-go").onclick = function () { show("scan"); useQrText(linked); };
      $("linked-no").onclick = function () { show("scan"); announce(t("nothing_sent")); };
    }
  }

  function api(method, path) {
    return fetch(path, { method: method, headers: { "Authorization": "Bearer " + state.token } })
      .then(function (response) { return response.json(); });
  }

  function sessionLine(session) {
    var since = new Date(session.created_at * 1000).toLocaleTimeString();
    return t("on", { browser: session.browser, os: session.os }) + " \u00b7 " +
      place(session.location) + " (" + session.ip + ") \u00b7 " + session.platform + " \u00b7 " +
      t("since", { time: since });
  }

  function listSessions() {
    api("GET", "/v1/accounts/sessions").then(function (env) {
      var list = $("session-list");
      list.textContent = "";
      if (env.code !== "OK") { announce(env.msg); return; }
      env.data.sessions.forEach(function (session) {
        var item = document.createElement("li");
        item.setAttribute("data-session-id", session.id);
        var text = document.createElement("span");
        text.textContent = sessionLine(session);
        var button = document.createElement("button");
        button.type = "button";
        button.textContent = t("log_out");
        button.setAttribute("aria-label", "Log out " + sessionLine(session));
        button.addEventListener("click", function () {
          api("DELETE", "/v1/accounts/sessions/" + encodeURIComponent(session.id)).then(listSessions);
        });
        item.appendChild(text);
        item.appendChild(button);
        list.appendChild(item);
      });
      if (!env.data.sessions.length) {
        var none = document.createElement("li");
        none.textContent = t("nowhere");
        list.appendChild(none);
      }
    });
  }

  $("end-all").addEventListener("click", function () {
    api("POST", "/v1/accounts/sessions/end_all").then(listSessions);
  });

  // The user's notices: an EventSource cannot send Authorization, so read the stream
  // with fetch (as a native app would with its own SSE client).
  function listenForNotices() {
    if (state.stream) state.stream.abort();
    if (!window.fetch || !window.TextDecoder) return;
    var abort = new AbortController();
    state.stream = abort;
    var lastId = "";
    function connect() {
      var headers = { "Authorization": "Bearer " + state.token, "Accept": "text/event-stream" };
      if (lastId) headers["Last-Event-ID"] = lastId;
      fetch("/v1/accounts/events", { headers: headers, signal: abort.signal }).then(function (response) {
        var reader = response.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function read() {
          return reader.read().then(function (chunk) {
            if (chunk.done) throw new Error("closed");
            buffer += decoder.decode(chunk.value, { stream: true });
            var blocks = buffer.split("\n\n");
            buffer = blocks.pop();
            blocks.forEach(handle);
            return read();
          });
        }
        return read();
      }).catch(function () {
        if (!abort.signal.aborted) setTimeout(connect, 3000);
      });
    }
    function handle(block) {
      var event = "message", data = "";
      block.split("\n").forEach(function (line) {
        if (line.indexOf("event: ") === 0) event = line.slice(7);
        else if (line.indexOf("data: ") === 0) data += line.slice(6);
        else if (line.indexOf("id: ") === 0) lastId = line.slice(4);
      });
      if (!data || (event !== "session_created" && event !== "session_ended")) return;
      var session = JSON.parse(data);
      var item = document.createElement("li");
      item.textContent = t(event === "session_created" ? "new_login" : "logged_out_line",
        { session: sessionLine(session) });
      $("notices").insertBefore(item, $("notices").firstChild);
      listSessions();
    }
    connect();
  }

  document.querySelectorAll("button.user").forEach(function (button) {
    button.addEventListener("click", function () {
      signIn(button.getAttribute("data-token"), button.getAttribute("data-name"));
    });
  });
  $("use-token").addEventListener("click", function () {
    var token = $("token").value.trim();
    if (token) signIn(token, "the token's user");
  });

  // A step the service could not take now (503: it cannot reach its store; 429) is sent
  // again after Retry-After, with jitter, a few times. Steps are safe to repeat.
  var RETRIES = 4, RETRY_CAP_S = 10;

  function sendAgainLater(request, tries) {
    return request().then(function (response) {
      if ((response.status !== 503 && response.status !== 429) || tries >= RETRIES) return response;
      var seconds = Math.min(Number(response.headers.get("Retry-After")) || 1, RETRY_CAP_S);
      seconds *= 0.5 + Math.random();
      if (response.status === 503) announce(t("busy"));
      return new Promise(function (resolve) { setTimeout(resolve, seconds * 1000); })
        .then(function () { return sendAgainLater(request, tries + 1); });
    });
  }

  function fill(step, extra) {
    var body = Object.assign({ id: state.qrId, step: step }, extra || {});
    return sendAgainLater(function () {
      return fetch("/v1/accounts/qrcode_fill", {
        method: "POST",
        headers: { "Content-Type": "application/json", "Authorization": "Bearer " + state.token },
        body: JSON.stringify(body),
      });
    }, 0).then(function (response) { return response.json(); });
  }

  function ago(seconds) {
    if (seconds < 60) return t("seconds_ago", { n: seconds });
    return t("minutes_ago", { n: Math.floor(seconds / 60) });
  }

  // Longest part of the raw user agent shown behind "Details" (characters).
  var AGENT_SHOWN = 160;

  function place(location) {
    if (!location) return t("location_unknown");
    return [location.city, location.country_name || location.country].filter(Boolean).join(", ");
  }

  // What the attacker of a relayed QR cannot choose comes first: where the request is from.
  function describe(client) {
    var line = place(client.location) + " (" + client.ip + "): " +
      t("on", { browser: client.browser, os: client.os }) + ", " + client.platform;
    var age = Math.max(0, Math.floor(Date.now() / 1000) - client.created_at);
    return line + ", " + ago(age);
  }

  function useQrText(text) {
    var id = null;
    try {
      var parsed = JSON.parse(text);
      id = parsed && parsed.id;
    } catch (e) {
      id = /^[A-Za-z0-9_-]{16,64}$/.test(text.trim()) ? text.trim() : null;
    }
    if (!id) { announce(t("not_a_code")); return; }
    state.qrId = id;
    fill("SCAN").then(function (env) {
      if (env.code !== "OK") { announce(env.msg); return; }
      state.client = env.data.client;
      var render = function () { $("requester").textContent = describe(state.client); };
      render();
      clearInterval(state.ticker);
      state.ticker = setInterval(render, 1000);
      var agent = state.client.user_agent || "";
      $("requester-agent").textContent = agent.length > AGENT_SHOWN ? agent.slice(0, AGENT_SHOWN) + "\u2026" : agent;
      var warning = env.data.network && env.data.network.warning;
      $("network-warning").hidden = !warning;
      $("network-warning").textContent = warning || "";
      // Number matching, as the SCAN answer says: the code field only when it is on.
      var matching = env.data.matching || { required: false, length: 2 };
      $("matching").hidden = !matching.required;
      $("verify-code").maxLength = matching.length;
      $("verify-code").value = "";
      show("confirm");
      announce((warning ? warning + " " : "") + t("asks", { who: describe(state.client) }));
    }).catch(function () { announce(t("unreachable")); });
  }

  $("use-text").addEventListener("click", function () { useQrText($("qr-text").value); });

  function finish(step) {
    var extra = {};
    if (step === "VERIFY" && !$("matching").hidden) extra.verify_code = $("verify-code").value.trim();
    fill(step, extra).then(function (env) {
      clearInterval(state.ticker);
      if (env.code !== "OK") { announce(env.msg); return; }
      announce(t(step === "VERIFY" ? "confirmed" : "cancelled"));
      show("scan");
    }).catch(function () { announce(t("unreachable")); });
  }
  $("approve").addEventListener("click", function () { finish("VERIFY"); });
  $("reject").addEventListener("click", function () { finish("CANCEL"); });

  // A photo works everywhere, even where the live camera needs HTTPS: decode it with jsQR.
  $("photo").addEventListener("change", function () {
    var file = $("photo").files[0];
    if (!file) return;
    var image = new Image();
    image.onload = function () {
      var canvas = document.createElement("canvas");
      var scale = Math.min(1, 1200 / Math.max(image.width, image.height));
      canvas.width = Math.round(image.width * scale);
      canvas.height = Math.round(image.height * scale);
      var context = canvas.getContext("2d");
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      var pixels = context.getImageData(0, 0, canvas.width, canvas.height);
      var code = window.jsQR(pixels.data, pixels.width, pixels.height);
      URL.revokeObjectURL(image.src);
      if (code) useQrText(code.data); else announce(t("no_code_in_photo"));
    };
    image.src = URL.createObjectURL(file);
  });

  // The camera: the browser's BarcodeDetector where there is one, else the shipped jsQR.
  $("camera").addEventListener("click", function () {
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      announce(t("no_camera"));
      return;
    }
    var video = $("video");
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } }).then(function (stream) {
      state.stream = stream;
      video.srcObject = stream;
      video.hidden = false;
      return video.play();
    }).then(function () {
      var detector = "BarcodeDetector" in window ? new window.BarcodeDetector({ formats: ["qr_code"] }) : null;
      var canvas = document.createElement("canvas");
      var context = canvas.getContext("2d", { willReadFrequently: true });
      function stop() {
        state.stream.getTracks().forEach(function (t) { t.stop(); });
        video.hidden = true;
      }
      function look() {
        if (video.hidden) return;
        var found = detector
          ? detector.detect(video).then(function (codes) { return codes.length ? codes[0].rawValue : null; })
          : Promise.resolve((function () {
              canvas.width = video.videoWidth;
              canvas.height = video.videoHeight;
              context.drawImage(video, 0, 0);
              var image = context.getImageData(0, 0, canvas.width, canvas.height);
              var code = window.jsQR(image.data, image.width, image.height);
              return code ? code.data : null;
            })());
        found.then(function (text) {
          if (text) { stop(); useQrText(text); } else { requestAnimationFrame(look); }
        });
      }
      look();
    }).catch(function () { announce(t("camera_unavailable")); });
  });
})();
