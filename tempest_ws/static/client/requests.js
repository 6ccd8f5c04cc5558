// Requests: envelopes waiting for the reply that carries their request_id.

import { TempestWSError } from "./errors.js";
import { randomId, startTimer, stopTimer } from "./runtime.js";

/** @import { Envelope } from "../tempest-ws.js" */

/**
 * @typedef {object} Pending
 * @property {(envelope: Envelope) => void} resolve
 * @property {(error: TempestWSError) => void} reject
 * @property {boolean} sent written to a socket (a close then rejects it "disconnected")
 * @property {ReturnType<typeof setTimeout> | null} timer
 * @property {AbortSignal | undefined} signal
 * @property {(() => void) | null} onAbort
 * @property {boolean} alsoMessage the reply is a `message` event too
 */

/**
 * The requests of one client that wait for a reply, by request_id. Each is settled
 * once: by its reply, its timeout, its AbortSignal, or the loss of its socket.
 */
export class Requests {
  /** @type {Map<string, Pending>} */
  #pending = new Map();
  #prefix = randomId();
  #nextId = 0;
  /** @type {(requestId: string) => void} */
  #onFail;

  /** @param {(requestId: string) => void} onFail called for each request rejected (to unqueue it) */
  constructor(onFail) {
    this.#onFail = onFail;
  }

  /** A request_id no other request of this client had. */
  newId() {
    return `${this.#prefix}-${++this.#nextId}`;
  }

  /**
   * Wait for the reply to `requestId`; reject with "timeout" (and `timeoutMessage`)
   * after `timeout` ms (0 or Infinity: never), or with "aborted" when `signal` aborts.
   *
   * @param {string} requestId
   * @param {{resolve: (envelope: Envelope) => void, reject: (error: TempestWSError) => void,
   *   timeout: number, timeoutMessage: string, signal?: AbortSignal, sent?: boolean,
   *   alsoMessage?: boolean}} wait
   */
  add(requestId, { resolve, reject, timeout, timeoutMessage, signal, sent = false, alsoMessage = false }) {
    /** @type {Pending} */
    const entry = { resolve, reject, sent, timer: null, signal, onAbort: null, alsoMessage };
    entry.timer = startTimer(() => this.settle(requestId, new TempestWSError(timeoutMessage, { code: "timeout" })), timeout);
    if (signal) {
      entry.onAbort = () => this.settle(requestId, new TempestWSError("request aborted", { code: "aborted" }));
      signal.addEventListener("abort", entry.onAbort, { once: true });
    }
    this.#pending.set(requestId, entry);
  }

  /**
   * Note that `requestId` was written to a socket.
   *
   * @param {string | null} requestId
   */
  markSent(requestId) {
    const entry = requestId && this.#pending.get(requestId);
    if (entry) entry.sent = true;
  }

  /**
   * Settle the request `envelope` answers, if any: an `error` envelope rejects with its
   * `data.code` and `data.message`, anything else resolves. Returns whether the
   * envelope was consumed (a reply that is not also a `message` event).
   *
   * @param {Envelope} envelope
   * @returns {boolean}
   */
  answer(envelope) {
    const requestId = envelope.request_id;
    const entry = requestId != null && this.#pending.get(requestId);
    if (!requestId || !entry) return false;
    if (envelope.type === "error") {
      const info = /** @type {{code?: unknown, message?: unknown}} */ (envelope.data ?? {});
      const message = typeof info.message === "string" ? info.message : "request failed";
      this.settle(requestId, new TempestWSError(message, { code: String(info.code ?? "error"), envelope }));
    } else {
      this.settle(requestId, null, envelope);
    }
    return !entry.alsoMessage;
  }

  /**
   * Reject every request already written to the socket that just closed with `code`.
   *
   * @param {number} code
   */
  disconnected(code) {
    for (const [requestId, entry] of this.#pending) {
      if (entry.sent) {
        this.settle(requestId, new TempestWSError("connection closed before the reply", { code: "disconnected", closeCode: code }));
      }
    }
  }

  /**
   * Reject every request with `error`.
   *
   * @param {TempestWSError} error
   */
  rejectAll(error) {
    for (const requestId of [...this.#pending.keys()]) this.settle(requestId, error);
  }

  /**
   * Settle `requestId` (once: later calls do nothing).
   *
   * @param {string} requestId
   * @param {TempestWSError | null} error
   * @param {Envelope} [envelope]
   */
  settle(requestId, error, envelope) {
    const entry = this.#pending.get(requestId);
    if (!entry) return;
    this.#pending.delete(requestId);
    stopTimer(entry.timer);
    if (entry.onAbort) entry.signal?.removeEventListener("abort", entry.onAbort);
    if (error) {
      this.#onFail(requestId);
      entry.reject(error);
    } else {
      entry.resolve(/** @type {Envelope} */ (envelope));
    }
  }
}
