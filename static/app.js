// The main page after login: watch the session, and go back to the login page the
// moment it ends (logout here, or "log out" on the phone).
(function () {
  "use strict";
  // Leave once: after a logout here, the session's end also arrives on its stream, and a
  // second navigation would abort the first.
  var leaving = false;
  function leave() {
    if (!leaving) { leaving = true; location.assign("/"); }
  }
  var watch = QRLogin.watchSession({
    onEnd: function (session) {
      var messages = JSON.parse(document.getElementById("page-messages").textContent);
      var why = messages[session && session.reason === "revoked" ? "logged_out_by_phone" : "logged_out"];
      document.getElementById("session-state").textContent = why;
      leave();
    },
  });
  document.getElementById("logout").addEventListener("click", function () {
    QRLogin.logout().then(function () { watch.stop(); leave(); });
  });
})();
