// What to do after a close: the policy by close code and the delay before reconnecting.

import { CloseCode } from "./codes.js";
import { TempestWSError } from "./errors.js";
import { DEFAULT_OPTIONS } from "./options.js";

/** @import { ClosePolicy, TempestWSOptions } from "../tempest-ws.js" */

/**
 * The options reconnectDelay() reads.
 *
 * @typedef {Pick<TempestWSOptions, "minReconnectionDelay" | "maxReconnectionDelay" | "reconnectionDelayGrowFactor"
 *   | "longReconnectionDelay" | "maxLongReconnectionDelay">} BackoffOptions
 */

/**
 * What the client does after the socket closed with `code`.
 *
 * @param {number} code the close code
 * @param {boolean} [userInitiated] the application called `close()`
 * @returns {ClosePolicy}
 *   "stop": do not reconnect; "auth": get a new token and reconnect (up to
 *   maxAuthFailures in a row); "long": reconnect after a long backoff; "reconnect":
 *   reconnect with exponential backoff and full jitter.
 */
export function closePolicy(code, userInitiated = false) {
  if (userInitiated) return "stop";
  switch (code) {
    case CloseCode.UNAUTHORIZED:
      return "auth";
    case CloseCode.TRY_AGAIN_LATER:
    case CloseCode.TOO_MANY_CONNECTIONS:
      return "long";
    case CloseCode.PROTOCOL_ERROR:
    case CloseCode.UNSUPPORTED_DATA:
    case CloseCode.INVALID_PAYLOAD:
    case CloseCode.POLICY_VIOLATION:
    case CloseCode.FORBIDDEN:
      return "stop";
    default:
      return "reconnect";
  }
}

/**
 * Delay in milliseconds before reconnect attempt `attempt` (0 for the first).
 *
 * Exponential backoff with full jitter between a floor and a growing ceiling (the same
 * rule as the Python client): uniform in [floor, min(cap, floor * factor ** (attempt + 1))].
 * For "reconnect" and "auth" the floor is minReconnectionDelay and the cap
 * maxReconnectionDelay; for "long" (after 4429 or 1013) longReconnectionDelay and
 * maxLongReconnectionDelay. Even the first delay is random, so clients dropped together
 * by one server restart do not come back together.
 *
 * @param {number} attempt
 * @param {"reconnect" | "auth" | "long"} [kind]
 * @param {BackoffOptions} [options] client options (defaults for those omitted)
 * @param {() => number} [random] a uniform [0, 1) source
 * @returns {number}
 */
export function reconnectDelay(attempt, kind = "reconnect", options = {}, random = Math.random) {
  const all = { ...DEFAULT_OPTIONS, ...options };
  const long = kind === "long";
  const floor = long ? all.longReconnectionDelay : all.minReconnectionDelay;
  const cap = long ? all.maxLongReconnectionDelay : all.maxReconnectionDelay;
  const growth = all.reconnectionDelayGrowFactor ** (Math.max(0, attempt) + 1);
  const ceiling = Math.max(floor, Math.min(cap, floor * growth));
  return Math.round(floor + random() * (ceiling - floor));
}

/**
 * The decision after a close: the policy, the new count of consecutive 4401s, and the
 * error that stops the client (null to go on). A close the application asked for stops
 * without an error; a close code that forbids reconnecting, the `maxAuthFailures`-th
 * 4401 in a row and a reconnect past `maxRetries` each stop with one.
 *
 * @param {{code: number, reason: string, userInitiated: boolean, authFailures: number,
 *   retryCount: number, maxAuthFailures: number, maxRetries: number}} close
 * @returns {{policy: ClosePolicy, authFailures: number, fatal: TempestWSError | null}}
 */
export function closeDecision({ code, reason, userInitiated, authFailures, retryCount, maxAuthFailures, maxRetries }) {
  const policy = closePolicy(code, userInitiated);
  let fatal = null;
  if (policy === "stop" && !userInitiated) {
    fatal = new TempestWSError(`server closed the connection with ${code} (${reason || "no reason"}); not reconnecting`, {
      code: "closed_by_server",
      closeCode: code,
    });
  } else if (policy === "auth" && ++authFailures >= maxAuthFailures) {
    fatal = new TempestWSError(`authentication failed: ${authFailures} consecutive 4401 closes; giving up`, {
      code: "auth_failed",
      closeCode: code,
    });
  }
  if (!fatal && policy !== "stop" && retryCount >= maxRetries) {
    fatal = new TempestWSError(`gave up after ${retryCount} reconnect attempts`, { code: "max_retries", closeCode: code });
  }
  return { policy, authFailures, fatal };
}
