// The demo login page: the SDK mounted with a few lines, as a front-end developer would.
(function () {
  "use strict";
  var root = document.getElementById("qrlogin");
  var query = new URLSearchParams(location.search);
  var transport = query.get("transport") || "auto";
  window.qrlogin = QRLogin.mount(root, {
    platform: root.getAttribute("data-platform"),
    transport: transport,
    share: query.get("share") !== "off",
    onSuccess: function () { location.assign("/app"); },
    // The demo's "Open in the app" opens the phone stand-in (a real page opens the app).
    appUrl: function (link) { return "/m#link=" + encodeURIComponent(link); },
  });
})();
