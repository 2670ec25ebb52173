// Type declarations for qrlogin.mjs (the ES module), and for window.QRLogin, which the
// script tag (qrlogin.js) sets.
// Checked by tests/test_sdk_types.py with the TypeScript compiler against
// docs/examples/sdk_example.ts.

export type Status =
  | "QRCODE_WAIT"
  | "QRCODE_SCANNED"
  | "QRCODE_SUCCESS"
  | "QRCODE_CANCEL"
  | "QRCODE_EXPIRE"
  | "QRCODE_ERROR";

/** Why a QR is QRCODE_ERROR. */
export type Reason = "replaced" | "used" | "verify_failed";

export interface User {
  id: string;
  name: string;
  avatar: string | null;
}

/** The data of each `status` event (and of each poll): never a token. */
export interface StatusEvent {
  id?: string;
  status: Status;
  /** The QR's deadline, Unix seconds. */
  expire: number;
  /** Who scanned (from the scan on, or from confirmation with QRLOGIN_REVEAL_SCANNER=confirm). */
  user?: User;
  /** The 2-digit code to type on the phone, with number matching. */
  verify_code?: string;
  reason?: Reason;
  /** The state's version, on the stream the tabs share (each tab skips what it has seen). */
  version?: number;
}

export interface Login {
  /** The login token: send it to the main application. */
  token: string;
  user: User;
}

export interface MountOptions {
  /** Which product asks (1 to 32 of A-Z a-z 0-9 _ . -). */
  platform: string;
  onSuccess?: (login: Login) => void;
  onStatus?: (status: Status, data: StatusEvent) => void;
  /** "auto": SSE, falling back to the long poll by itself. */
  transport?: "auto" | "sse" | "poll";
  /** Where the service is; default: where the script came from. */
  baseUrl?: string;
  /** The tabs of a browser share one stream (Web Locks + BroadcastChannel); default true. */
  share?: boolean;
  /** Offer "Open in the app" (same-device login): "auto" (default) offers it on a phone. */
  appLink?: "auto" | boolean;
  /** What "Open in the app" opens, given the app link (`prefix?qr=<QR text>`); default: the link. */
  appUrl?: (link: string) => string;
  /** The widget's language: "en" or "zh-CN" (any "zh-*"); default: the page's `lang`, else
   * the browser's. Others are English. */
  locale?: string;
}

/** What mount() returns; after success or stop() nothing of it keeps running. */
export interface MountHandle {
  refresh(): void;
  stop(): void;
}

export interface Session {
  id: string;
  status: "active" | "ended";
  user: User;
  platform: string;
  browser: string;
  os: string;
  ip: string;
  location: { country: string | null; country_name: string | null; city: string | null } | null;
  qr_id: string;
  created_at: number;
  last_seen_at: number;
  expire: number;
  ended_at?: number;
  reason?: "logout" | "revoked" | "idle" | "expired";
}

export interface WatchSessionOptions {
  /** Called once when the session ends (null when the service says only that it has). */
  onEnd?: (session: Session | null) => void;
  baseUrl?: string;
  /** The tabs of a browser share one session stream; default true. */
  share?: boolean;
}

export interface Envelope<T> {
  code: string;
  msg: string;
  data: T | null;
}

export interface QRLoginSDK {
  mount(root: HTMLElement, options: MountOptions): MountHandle;
  watchSession(options?: WatchSessionOptions): { stop(): void };
  logout(options?: { baseUrl?: string }): Promise<Envelope<{ session: Session }>>;
  /** Which shared streams this tab holds for its browser (for debugging). */
  sharing(): Array<"qr" | "session">;
  version: string;
}

export declare const mount: QRLoginSDK["mount"];
export declare const watchSession: QRLoginSDK["watchSession"];
export declare const logout: QRLoginSDK["logout"];
declare const QRLogin: QRLoginSDK;
export default QRLogin;

declare global {
  interface Window {
    QRLogin: QRLoginSDK;
  }
}
