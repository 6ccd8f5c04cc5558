// Subscriptions: the topics a client restores after every reconnect, with their positions.

import { encode } from "./envelope.js";
import { TempestWSError } from "./errors.js";

/** @import { AckData, Envelope, Position, Positions } from "../tempest-ws.js" */
/** @import { Requests } from "./requests.js" */

/**
 * @typedef {object} Waiter a `subscribe(topic)` Promise still waiting for its answer
 * @property {(envelope: Envelope<AckData>) => void} resolve
 * @property {(error: TempestWSError) => void} reject
 */

/**
 * The remembered topics, the `subscribe()` Promises waiting for an answer, the
 * request_id of each topic's latest subscribe, and the last known position of each
 * topic with history.
 */
export class Subscriptions {
  /** @type {Set<string>} */
  #topics = new Set();
  /** @type {Map<string, Waiter[]>} */
  #waiters = new Map();
  /** @type {Map<string, string>} topic -> request_id of the latest subscribe sent */
  #ids = new Map();
  /** @type {Map<string, Position>} */
  #positions;
  #requests;
  #write;
  /** @type {(type: "subscribeerror", detail: {topic: string, error: TempestWSError}) => void} */
  #emit;
  #timeout;

  /**
   * @param {{positions: Map<string, Position>, requests: Requests, write: (frame: string) => void,
   *   emit: (type: "subscribeerror", detail: {topic: string, error: TempestWSError}) => void,
   *   requestTimeout: number}} collaborators
   *   `positions`: the seeded positions (kept, and moved); `write`: writes to the open
   *   socket; `emit`: fires the client's `subscribeerror` event.
   */
  constructor({ positions, requests, write, emit, requestTimeout }) {
    this.#positions = positions;
    this.#requests = requests;
    this.#write = write;
    this.#emit = emit;
    this.#timeout = requestTimeout;
  }

  /** The remembered topics, in subscription order. */
  get topics() {
    return [...this.#topics];
  }

  /**
   * A copy of the positions as a plain object `{topic: {offset, epoch}}`.
   *
   * @returns {Positions}
   */
  get positions() {
    return Object.fromEntries([...this.#positions].map(([topic, { offset, epoch }]) => [topic, { offset, epoch }]));
  }

  /**
   * Remember `topic`; the returned Promise is settled by the answer to its next
   * subscribe (and marked handled: ignoring it never causes an unhandled rejection).
   *
   * @param {string} topic
   * @returns {Promise<Envelope<AckData>>}
   */
  add(topic) {
    this.#topics.add(topic);
    /** @type {Promise<Envelope<AckData>>} */
    const answer = new Promise((resolve, reject) => {
      const waiters = this.#waiters.get(topic) ?? [];
      waiters.push({ resolve, reject });
      this.#waiters.set(topic, waiters);
    });
    answer.catch(() => {}); // marks it handled; callers that await it still see the rejection
    return answer;
  }

  /**
   * Forget `topic` and its position; a Promise still waiting rejects "unsubscribed".
   * Returns whether the topic was remembered.
   *
   * @param {string} topic
   */
  remove(topic) {
    const had = this.#topics.delete(topic);
    this.#positions.delete(topic);
    this.#ids.delete(topic);
    this.#settle(topic, new TempestWSError(`unsubscribed from ${topic} before the answer`, { code: "unsubscribed" }));
    return had;
  }

  /**
   * Move `topic`'s position, unless the topic is no longer (or was never) subscribed.
   *
   * @param {string} topic
   * @param {Position} position
   */
  track(topic, position) {
    if (this.#topics.has(topic)) this.#positions.set(topic, position);
  }

  /** Send a subscribe for every remembered topic (after a `hello`). */
  sendAll() {
    for (const topic of this.#topics) this.send(topic);
  }

  /**
   * Send a subscribe for `topic` on the open socket, with its position when known.
   *
   * @param {string} topic
   */
  send(topic) {
    const position = this.#positions.get(topic);
    const data = position ? { topic, offset: position.offset, epoch: position.epoch } : { topic };
    const requestId = this.#requests.newId();
    this.#ids.set(topic, requestId);
    this.#requests.add(requestId, {
      resolve: (envelope) => {
        if (this.#ids.get(topic) === requestId) this.#settle(topic, null, /** @type {Envelope<AckData>} */ (envelope));
      },
      reject: (error) => this.#failed(topic, requestId, error),
      timeout: this.#timeout,
      timeoutMessage: `no answer to subscribe ${topic} within ${this.#timeout} ms`,
      sent: true,
      alsoMessage: true, // the answer is a message event too, as it was before subscribe() awaited it
    });
    this.#write(encode("subscribe", data, requestId));
  }

  /**
   * Reject every Promise still waiting with `error` (the client stopped).
   *
   * @param {TempestWSError} error
   */
  rejectAll(error) {
    for (const topic of [...this.#waiters.keys()]) this.#settle(topic, error);
  }

  /**
   * @param {string} topic
   * @param {string} requestId
   * @param {TempestWSError} error
   */
  #failed(topic, requestId, error) {
    // Lost with its socket: the subscribe is sent again after the next hello.
    if (error.code === "disconnected") return;
    // Superseded by a newer subscribe (or by unsubscribe): the topic awaits that answer.
    if (this.#ids.get(topic) !== requestId) return;
    if (error.envelope) {
      // The server refused it.
      this.#ids.delete(topic);
      this.#topics.delete(topic);
      this.#positions.delete(topic);
      this.#emit("subscribeerror", { topic, error });
    }
    this.#settle(topic, error);
  }

  /**
   * Settle every `subscribe(topic)` Promise still waiting.
   *
   * @param {string} topic
   * @param {TempestWSError | null} error
   * @param {Envelope<AckData>} [envelope]
   */
  #settle(topic, error, envelope) {
    const waiters = this.#waiters.get(topic);
    if (!waiters) return;
    this.#waiters.delete(topic);
    for (const { resolve, reject } of waiters) {
      if (error) reject(error);
      else resolve(/** @type {Envelope<AckData>} */ (envelope));
    }
  }
}
