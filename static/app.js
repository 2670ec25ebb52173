// The main page after login: watch the session, and go back to the login page the
// moment it ends (logout here, or "log out" on the phone).
(function () {
  "use strict";
  var watch = QRLogin.watchSession({
    onEnd: function (session) {
      var why = session && session.reason === "revoked" ? "Logged out from the phone." : "Logged out.";
      document.getElementById("session-state").textContent = why;
      location.assign("/");
    },
  });
  document.getElementById("logout").addEventListener("click", function () {
    QRLogin.logout().then(function () { watch.stop(); location.assign("/"); });
  });
})();
