// The client's options: their defaults and the checks a constructor runs on them.

import { seedPositions } from "./history.js";

/** @import { Position, TempestWSOptions } from "../tempest-ws.js" */

/**
 * The options after checkOptions(): every one present, `positions` a Map, `protocols`
 * an array and `WebSocket` a constructor.
 *
 * @typedef {Omit<Required<TempestWSOptions>, "positions" | "protocols" | "WebSocket"> & {
 *   positions: Map<string, Position>, protocols: string[], WebSocket: typeof WebSocket
 * }} Options
 */

/**
 * Defaults: safer than reconnecting-websocket's (bounded queue, longer waits).
 *
 * @type {Readonly<Required<TempestWSOptions>>}
 */
export const DEFAULT_OPTIONS = Object.freeze({
  token: null,
  tokenProvider: null,
  tokenRefreshMargin: 30000,
  protocols: [],
  minReconnectionDelay: 1000,
  maxReconnectionDelay: 30000,
  reconnectionDelayGrowFactor: 2,
  longReconnectionDelay: 5000,
  maxLongReconnectionDelay: 120000,
  minUptime: 5000,
  connectionTimeout: 10000,
  maxRetries: Infinity,
  maxAuthFailures: 3,
  maxEnqueuedMessages: 100,
  queueOverflow: "drop-oldest",
  requestTimeout: 10000,
  silenceTimeout: null,
  reconnectOnOnline: true,
  startClosed: false,
  positions: null,
  WebSocket: null,
});

const MAX_REFRESH_MARGIN = 24 * 3600 * 1000;

/** @type {readonly (keyof TempestWSOptions)[]} */
const NON_NEGATIVE = [
  "minReconnectionDelay",
  "maxReconnectionDelay",
  "longReconnectionDelay",
  "maxLongReconnectionDelay",
  "minUptime",
  "connectionTimeout",
  "requestTimeout",
  "maxEnqueuedMessages",
  "maxRetries",
  "maxAuthFailures",
];

/**
 * The options a constructor was given, checked and completed with the defaults.
 *
 * @param {TempestWSOptions} given
 * @returns {Options}
 * @throws {TypeError | RangeError} for an unknown option or a value out of range.
 */
export function checkOptions(given) {
  const unknown = Object.keys(given).filter((key) => !(key in DEFAULT_OPTIONS));
  if (unknown.length) {
    throw new TypeError(`TempestWS: unknown option(s) ${unknown.join(", ")}`);
  }
  const options = { ...DEFAULT_OPTIONS, ...given };
  if (options.token != null && options.tokenProvider != null) {
    throw new TypeError("TempestWS: give either token or tokenProvider, not both");
  }
  if (options.tokenProvider != null && typeof options.tokenProvider !== "function") {
    throw new TypeError("TempestWS: tokenProvider must be a function returning a token");
  }
  const margin = options.tokenRefreshMargin;
  if (margin != null && !(typeof margin === "number" && margin >= 0 && margin <= MAX_REFRESH_MARGIN)) {
    throw new RangeError(`TempestWS: tokenRefreshMargin must be null or a number of ms in [0, ${MAX_REFRESH_MARGIN}]`);
  }
  if (!["drop-oldest", "throw"].includes(options.queueOverflow)) {
    throw new TypeError('TempestWS: queueOverflow must be "drop-oldest" or "throw"');
  }
  for (const key of NON_NEGATIVE) {
    const value = options[key];
    if (typeof value !== "number" || !(value >= 0)) {
      throw new RangeError(`TempestWS: ${key} must be a number >= 0`);
    }
  }
  if (options.minReconnectionDelay > options.maxReconnectionDelay) {
    throw new RangeError("TempestWS: minReconnectionDelay must be <= maxReconnectionDelay");
  }
  if (options.longReconnectionDelay > options.maxLongReconnectionDelay) {
    throw new RangeError("TempestWS: longReconnectionDelay must be <= maxLongReconnectionDelay");
  }
  if (!(options.reconnectionDelayGrowFactor >= 1)) {
    throw new RangeError("TempestWS: reconnectionDelayGrowFactor must be >= 1");
  }
  if (options.maxAuthFailures < 1) {
    throw new RangeError("TempestWS: maxAuthFailures must be >= 1");
  }
  if (options.silenceTimeout != null && !(options.silenceTimeout > 0)) {
    throw new RangeError("TempestWS: silenceTimeout must be a positive number of ms or null");
  }
  const WebSocketClass = options.WebSocket ?? globalThis.WebSocket;
  const checked = {
    ...options,
    positions: seedPositions(options.positions),
    protocols: /** @type {string[]} */ ([]).concat(options.protocols ?? []),
    WebSocket: WebSocketClass,
  };
  if (typeof WebSocketClass !== "function") {
    throw new TypeError("TempestWS: no WebSocket implementation available");
  }
  return checked;
}
