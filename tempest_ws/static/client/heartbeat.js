// Heartbeat: noticing a server that went silent, and the browser coming back online.

import { now, startTimer, stopTimer } from "./runtime.js";

/**
 * Watches the time since the last frame arrived and calls `onSilent` once it exceeds
 * the silence timeout of the open connection (every frame counts as proof of life; the
 * server's pings guarantee one per heartbeat).
 */
export class SilenceWatch {
  /** @type {() => void} */
  #onSilent;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #timer = null;
  #lastSeen = 0;
  #limit = 0;

  /** @param {() => void} onSilent called when the server has been silent too long */
  constructor(onSilent) {
    this.#onSilent = onSilent;
  }

  /** A frame arrived. */
  seen() {
    this.#lastSeen = now();
  }

  /**
   * Start watching with a limit of `ms` of silence (0: never).
   *
   * @param {number} ms
   */
  start(ms) {
    this.#limit = ms;
    this.#arm(ms);
  }

  /** Stop watching (the socket is gone). */
  stop() {
    stopTimer(this.#timer);
  }

  /** @param {number} delay */
  #arm(delay) {
    stopTimer(this.#timer);
    if (!this.#limit) return;
    this.#timer = startTimer(() => {
      const idle = now() - this.#lastSeen;
      if (idle >= this.#limit) this.#onSilent();
      else this.#arm(Math.max(1, this.#limit - idle));
    }, delay);
  }
}

/**
 * Calls `onOnline` whenever the browser fires `online` while listening (where the host
 * has such events and the reconnectOnOnline option is on).
 */
export class OnlineWatch {
  #enabled;
  #onOnline;
  #listening = false;

  /**
   * @param {boolean} enabled the reconnectOnOnline option
   * @param {() => void} onOnline
   */
  constructor(enabled, onOnline) {
    this.#enabled = enabled;
    this.#onOnline = () => onOnline();
  }

  /**
   * Start (true) or stop (false) listening.
   *
   * @param {boolean} on
   */
  listen(on) {
    const target = globalThis;
    if (!this.#enabled || typeof target.addEventListener !== "function") return;
    if (on && !this.#listening) target.addEventListener("online", this.#onOnline);
    if (!on && this.#listening) target.removeEventListener("online", this.#onOnline);
    this.#listening = on;
  }
}
