// A front end in TypeScript using the SDK's declarations (static/qrlogin.d.ts);
// tests/test_sdk_types.py compiles it with tsc --noEmit.
import QRLogin, { mount, watchSession, type Login, type Status, type StatusEvent } from "../../static/qrlogin.mjs";

const root = document.getElementById("login");
if (root) {
  const handle = mount(root, {
    platform: "web",
    transport: "auto",
    share: true,
    appLink: "auto",
    appUrl: (link: string) => link,
    onStatus: (status: Status, data: StatusEvent) => {
      if (status === "QRCODE_SCANNED" && data.user) console.log(`scanned by ${data.user.name}`);
      if (status === "QRCODE_ERROR") console.log(data.reason);
    },
    onSuccess: ({ token, user }: Login) => {
      console.log(user.id, token.length);
      handle.stop();
    },
  });
  window.setTimeout(() => handle.refresh(), 60_000);
}

const watch = watchSession({
  onEnd: (session) => {
    if (session?.reason === "revoked") location.assign("/");
  },
});
watch.stop();
void QRLogin.logout().then((answer) => answer.data?.session.status);
console.log(window.QRLogin.version);
