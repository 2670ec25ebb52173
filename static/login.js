// The demo login page: the SDK mounted with a few lines, as a front-end developer would.
(function () {
  "use strict";
  var root = document.getElementById("qrlogin");
  var transport = new URLSearchParams(location.search).get("transport") || "auto";
  window.qrlogin = QRLogin.mount(root, {
    platform: root.getAttribute("data-platform"),
    transport: transport,
    onSuccess: function () { location.assign("/app"); },
  });
})();
