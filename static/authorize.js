// The sign-in page of an OpenID Connect authorization: the SDK shows the QR; once this
// browser has redeemed the login, the same address, loaded again, sends it back to the
// relying party with its code.
(function () {
  "use strict";
  var root = document.getElementById("qrlogin");
  window.qrlogin = QRLogin.mount(root, {
    platform: root.getAttribute("data-platform"),
    onSuccess: function () { location.reload(); },
  });
})();
