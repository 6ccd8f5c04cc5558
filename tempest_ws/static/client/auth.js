// Tokens: reading a JWT's expiry, and refreshing the token on the open connection.

import { TempestWSError } from "./errors.js";
import { DEFAULT_OPTIONS } from "./options.js";
import { MAX_TIMER_MS, stopTimer } from "./runtime.js";

/** @import { Envelope, TempestWSErrorCode, TokenRequest } from "../tempest-ws.js" */

const MIN_REFRESH_RETRY = 1000; // a failed refresh is retried at most once a second

/**
 * When `token` expires, in milliseconds since the epoch: the `exp` claim of a JWT's
 * payload (base64url JSON), read without verifying anything. `null` for an opaque token,
 * a JWT without an `exp` that is a number or a string of digits, or anything that does
 * not decode.
 *
 * @param {unknown} token
 * @returns {number | null}
 */
export function tokenExpiry(token) {
  if (typeof token !== "string") return null;
  const parts = token.split(".");
  if (parts.length !== 3 || !/^[A-Za-z0-9_-]+$/.test(parts[1])) return null;
  try {
    const base64 = parts[1].replaceAll("-", "+").replaceAll("_", "/");
    const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
    const bytes = Uint8Array.from(atob(padded), (char) => char.charCodeAt(0));
    const payload = JSON.parse(new TextDecoder().decode(bytes));
    let exp = payload && typeof payload === "object" ? payload.exp : undefined;
    // A string of digits is an exp for PyJWT and for the server, so for the client too.
    if (typeof exp === "string" && /^\s*[+-]?\d{1,20}\s*$/.test(exp)) exp = Number(exp);
    return typeof exp === "number" && Number.isFinite(exp) ? exp * 1000 : null;
  } catch {
    return null;
  }
}

/**
 * The subprotocols to offer: ["bearer", token, ...extra] with a token, else `extra`.
 *
 * @param {string | null | undefined} token
 * @param {string[]} extra the protocols option
 * @returns {string[]}
 */
export const subprotocols = (token, extra) => (token ? ["bearer", String(token), ...extra] : [...extra]);

/**
 * How long (ms) to wait before refreshing a token that expires in `left` ms: refresh
 * `margin` ms before expiry, but never earlier than half-way, so a token that lives
 * shorter than twice the margin is still used for half its life. `null` for a token
 * already expired (the server closes 4401; the provider runs on the reconnect).
 *
 * @param {number} left ms until expiry
 * @param {number} margin the tokenRefreshMargin option
 * @returns {number | null}
 */
export function refreshDelay(left, margin = DEFAULT_OPTIONS.tokenRefreshMargin ?? 0) {
  if (!(left > 0)) return null;
  return Math.round(left - Math.min(Math.max(0, margin), left / 2));
}

/**
 * @typedef {object} RefreshHost what a TokenRefresh needs from its client
 * @property {((request: TokenRequest) => string | null | Promise<string | null>) | null} tokenProvider
 * @property {number | null} margin the tokenRefreshMargin option
 * @property {() => boolean} isOpen the client is open (its `hello` arrived)
 * @property {() => boolean} socketOpen the socket is open (not closing)
 * @property {() => TokenRequest} tokenRequest what to ask the provider, reason "refresh"
 * @property {(type: string, data: unknown) => Promise<Envelope>} request the client's request()
 * @property {(type: "tokenrefresh" | "warning" | "error", detail: object) => void} emit
 */

/**
 * The open connection's token expiry, and its refresh in band (an `auth.refresh`
 * envelope: no reconnect, no resubscribe) before it expires. `start()` on each `hello`,
 * `stop()` when the socket goes: a refresh that outlives its connection changes nothing.
 */
export class TokenRefresh {
  #host;
  #emit;
  /** @type {number | null} expiry (ms) of the open connection's token, or null */
  #expiresAt = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #timer = null;
  /** @type {Promise<number | null> | null} the refresh in flight, shared by concurrent callers */
  #refreshing = null;
  #epoch = 0; // changes with every connection, so late callbacks of the last one do nothing

  /** @param {RefreshHost} host */
  constructor(host) {
    this.#host = host;
    this.#emit = host.emit;
  }

  /** When the open connection's token expires (ms since the epoch), or null. */
  get expiresAt() {
    return this.#expiresAt;
  }

  /**
   * A connection opened with a token expiring at `expiresAt` (ms, or null).
   *
   * @param {number | null} expiresAt
   */
  start(expiresAt) {
    this.#epoch++;
    this.#expiresAt = expiresAt;
    this.#arm(false);
  }

  /** The connection is gone. */
  stop() {
    this.#epoch++;
    stopTimer(this.#timer);
    this.#timer = null;
    this.#expiresAt = null;
  }

  /**
   * Refresh now; calls made while a refresh is in flight share it.
   *
   * @returns {Promise<number | null>}
   */
  refresh() {
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /**
   * Schedule the next proactive refresh: at refreshDelay() before the expiry, or
   * (`retry`, after a failed refresh) no sooner than MIN_REFRESH_RETRY and only while
   * the token is still valid by then.
   *
   * @param {boolean} retry
   */
  #arm(retry) {
    stopTimer(this.#timer);
    this.#timer = null;
    const { tokenProvider, margin } = this.#host;
    if (!tokenProvider || margin == null || this.#expiresAt == null) return;
    const left = this.#expiresAt - Date.now(); // exp is wall-clock time
    let delay = refreshDelay(left, margin);
    if (delay == null) return;
    if (retry) {
      delay = Math.max(delay, MIN_REFRESH_RETRY);
      if (delay >= left) return; // too late: the server closes 4401, the provider runs on reconnect
    }
    const epoch = this.#epoch;
    const wait = delay;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (epoch !== this.#epoch || !this.#host.isOpen()) return;
      if (wait > MAX_TIMER_MS) {
        this.#arm(retry); // beyond one setTimeout: wait again
        return;
      }
      this.refresh().catch((error) => {
        if (epoch !== this.#epoch || !this.#host.isOpen()) return;
        this.#emit("error", { error, fatal: false });
        this.#arm(true);
      });
    }, Math.min(delay, MAX_TIMER_MS));
  }

  /** @returns {Promise<number | null>} */
  async #refresh() {
    const { tokenProvider } = this.#host;
    if (!tokenProvider) throw refreshError("refreshToken() needs a tokenProvider", "no_token_provider");
    if (!this.#host.isOpen()) throw refreshError("no open connection to refresh", "not_open");
    const epoch = this.#epoch;
    let token;
    try {
      token = await tokenProvider(this.#host.tokenRequest());
    } catch (cause) {
      throw new TempestWSError("the token provider failed to refresh the token", { code: "token_provider_failed", cause });
    }
    if (!token) throw refreshError("the token provider returned no token to refresh with", "token_provider_failed");
    // Never queued: a token meant for this connection is no use to the next one.
    if (epoch !== this.#epoch || !this.#host.isOpen() || !this.#host.socketOpen()) {
      throw refreshError("the connection changed during the refresh", "disconnected");
    }
    const reply = await this.#host.request("auth.refresh", { token: String(token) });
    const seconds = /** @type {{expires_at?: unknown} | null | undefined} */ (reply.data)?.expires_at;
    const expiresAt = typeof seconds === "number" && Number.isFinite(seconds) ? seconds * 1000 : null;
    if (epoch !== this.#epoch) return expiresAt; // acked, then the socket went
    const previous = this.#expiresAt;
    this.#expiresAt = expiresAt;
    this.#emit("tokenrefresh", { expiresAt });
    if (expiresAt != null && previous != null && expiresAt <= previous) {
      // The provider gave a token no newer than the last: refreshing again would loop.
      stopTimer(this.#timer);
      this.#timer = null;
      this.#emit("warning", { kind: "token-not-renewed", expiresAt });
    } else {
      this.#arm(false);
    }
    return expiresAt;
  }
}

/**
 * @param {string} message
 * @param {TempestWSErrorCode} code
 */
const refreshError = (message, code) => new TempestWSError(message, { code });
