// The offline queue: what the application sent while there was no open connection.

import { TempestWSError } from "./errors.js";

/**
 * @typedef {object} Queued
 * @property {string} frame
 * @property {string | null} requestId the request waiting for a reply to it, if any
 */

/**
 * A bounded FIFO of frames, flushed in order after the next `hello`. When full, it drops
 * its oldest frame (or refuses the new one when its limit is 0), or throws "queue_full"
 * with the `throw` overflow policy.
 */
export class OfflineQueue {
  /** @type {Queued[]} */
  #items = [];
  #limit;
  #overflow;
  /** @type {(dropped: Queued, refused: boolean) => void} */
  #onDrop;

  /**
   * @param {number} limit the maxEnqueuedMessages option
   * @param {"drop-oldest" | "throw"} overflow the queueOverflow option
   * @param {(dropped: Queued, refused: boolean) => void} onDrop called for a frame that
   *   was dropped (`refused`: the new one, because the limit is 0)
   */
  constructor(limit, overflow, onDrop) {
    this.#limit = limit;
    this.#overflow = overflow;
    this.#onDrop = onDrop;
  }

  get length() {
    return this.#items.length;
  }

  /**
   * Queue `frame`; returns false (it was not written).
   *
   * @param {string} frame
   * @param {string | null} requestId
   * @returns {false}
   * @throws {TempestWSError} "queue_full" when full and the overflow policy is "throw".
   */
  push(frame, requestId) {
    if (this.#items.length >= this.#limit) {
      if (this.#overflow === "throw") {
        throw new TempestWSError(`send queue full (${this.#limit} messages)`, { code: "queue_full" });
      }
      if (this.#limit === 0) {
        this.#onDrop({ frame, requestId }, true);
        return false;
      }
      const dropped = /** @type {Queued} */ (this.#items.shift());
      this.#onDrop(dropped, false);
    }
    this.#items.push({ frame, requestId });
    return false;
  }

  /** The oldest frame, taken off the queue (undefined when empty). */
  shift() {
    return this.#items.shift();
  }

  /**
   * Forget the frame of `requestId` (its request failed before it was sent).
   *
   * @param {string} requestId
   */
  remove(requestId) {
    const index = this.#items.findIndex((item) => item.requestId === requestId);
    if (index !== -1) this.#items.splice(index, 1);
  }

  /** Forget every frame; returns how many there were. */
  clear() {
    const count = this.#items.length;
    this.#items = [];
    return count;
  }
}
