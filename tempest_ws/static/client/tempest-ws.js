/**
 * tempest-ws.js: the browser client for tempest_ws servers.
 *
 * Dependency-free ES modules, one job each, served by the router under
 * `GET {path}/client/` (the entry, `client/tempest-ws.js`, imports its siblings), and as
 * one file built from them (`scripts/build_client.py`) at `GET {path}/client.js`. Both
 * export the same names:
 *
 *     import { TempestWS } from "/ws/client.js";
 *     const client = new TempestWS("/ws", { tokenProvider: async () => getToken() });
 *     client.addEventListener("message", (event) => console.log(event.detail));
 *     client.subscribe("room:lobby");
 *
 * What it does for you:
 * - sends the token as the subprotocols ["bearer", token] (the server echoes "bearer");
 *   `tokenProvider` is called again before every (re)connect;
 * - counts the connection as open when the server's `hello` envelope arrives (a socket
 *   the server accepts and then closes 4401 never fires `open`);
 * - answers `ping` envelopes with `pong` and closes and reconnects by itself when the
 *   server has been silent for longer than the heartbeat timeout its `hello` promised
 *   (heartbeat.js);
 * - reconnects by close code (see `closePolicy`), with exponential backoff and full
 *   jitter, a long backoff for 4429/1013 and a limit on consecutive 4401s (a connection
 *   that reaches `hello` ends the streak) (backoff.js);
 * - restores its topic subscriptions after every reconnect (subscriptions.js), then
 *   flushes the bounded queue of messages sent while offline (queue.js);
 * - remembers the position (`offset`, `epoch`) of the last message it got on each topic
 *   with history and sends it with every `subscribe`, so the server replays what it
 *   missed (a `recovery` event says whether that was possible) (history.js);
 * - `request(type, data)` returns a Promise settled by the reply carrying the same
 *   `request_id` (requests.js); `subscribe(topic)` returns one settled by the server's
 *   answer, and `presence`, `typing` and `receipt` wrap the server's built-in
 *   operations (topics.js);
 * - with a `tokenProvider`, it refreshes a JWT before its `exp` on the open connection
 *   (an `auth.refresh` envelope: no reconnect, no resubscribe) (auth.js).
 *
 * Option names follow `reconnecting-websocket` where they overlap (options.js). Nothing
 * is logged to the console: problems are reported as `warning` and `error` events.
 */

import { TokenRefresh } from "./auth.js";
import { CloseCode } from "./codes.js";
import { Connection } from "./connection.js";
import { encode } from "./envelope.js";
import { TempestWSError } from "./errors.js";
import { checkTopic } from "./history.js";
import { checkOptions } from "./options.js";
import { OfflineQueue } from "./queue.js";
import { Requests } from "./requests.js";
import { Subscriptions } from "./subscriptions.js";
import { presence, receipt, typing } from "./topics.js";

export { refreshDelay, tokenExpiry } from "./auth.js";
export { closePolicy, reconnectDelay } from "./backoff.js";
export { CloseCode, ReadyState } from "./codes.js";
export { TempestWSError } from "./errors.js";
export { DEFAULT_OPTIONS } from "./options.js";

/**
 * @import { AckData, Envelope, Positions, RequestOptions, TempestWSEventMap, TempestWSOptions }
 *   from "../tempest-ws.js"
 * @import { Url } from "./connection.js"
 */

/**
 * A reconnecting WebSocket that speaks tempest_ws envelopes.
 *
 * Events (all `CustomEvent`s, payload in `event.detail`):
 * - `open`: the server's `hello` arrived; detail {connectionId, hello, reconnected}.
 * - `message`: an envelope {type, data, request_id} that is not a heartbeat, a hello, a
 *   resync or the reply to a pending `request()`.
 * - `resync`: the server may have dropped messages (a backplane outage); reload state.
 * - `tokenrefresh`: the server accepted a refreshed token on the open connection; detail
 *   {expiresAt} (ms since the epoch, or null for a token without `exp`).
 * - `subscribeerror`: the server refused a subscription (now or at a resubscribe after
 *   a reconnect); the topic was forgotten. detail {topic, error: TempestWSError}.
 * - `recovery`: the server's answer to a `subscribe` on a topic with history, or its
 *   notice of a discontinuity; detail {topic, recovered, replayed, offset, epoch}.
 *   `recovered: false`: reload the topic's state, then continue from offset/epoch.
 * - `close`: the socket closed; detail {code, reason, wasClean, willReconnect}.
 * - `reconnecting`: a reconnect is scheduled; detail {attempt, delay, code, reason}.
 * - `error`: detail {error: TempestWSError, fatal}. Fatal errors (4401 limit, maxRetries,
 *   a close code that forbids reconnecting) stop the client.
 * - `warning`: detail {kind, ...}: "queue-overflow" (a queued message was dropped),
 *   "queue-discarded", "invalid-frame", "token-not-renewed" (a refresh brought no later
 *   expiry: no further proactive refresh on this connection).
 *
 * Positions: every inbound envelope that carries a valid top-level `topic`, `offset`
 * and `epoch` moves the position of that topic, if subscribed, after the listeners of
 * its event ran (a listener reading `client.positions` sees the position of the
 * previous message); so does every `recovery`. Malformed positions are ignored;
 * `unsubscribe(topic)` forgets the topic's position.
 */
export class TempestWS extends EventTarget {
  /** @type {Requests} */
  #requests;
  /** @type {OfflineQueue} */
  #queue;
  /** @type {Subscriptions} */
  #subscriptions;
  /** @type {TokenRefresh} */
  #refresh;
  /** @type {Connection} */
  #connection;
  /** @type {number} */
  #requestTimeout;

  /**
   * @param {Url} url ws(s)://, http(s):// or a path such as "/ws" (resolved against the
   *   page); or a function returning one, called before every connect.
   * @param {TempestWSOptions} [options] see DEFAULT_OPTIONS and the .d.ts for each option.
   */
  constructor(url, options = {}) {
    super();
    const checked = checkOptions(options);
    const limit = checked.maxEnqueuedMessages;
    const emit = (/** @type {string} */ type, /** @type {unknown} */ detail) => this.#emit(type, detail);
    this.#requestTimeout = checked.requestTimeout;
    this.#requests = new Requests((requestId) => this.#queue.remove(requestId));
    this.#queue = new OfflineQueue(limit, checked.queueOverflow, (dropped, refused) => {
      this.#emit("warning", { kind: "queue-overflow", dropped: dropped.frame, limit });
      if (dropped.requestId) {
        const message = refused ? "send queue full" : "dropped from a full send queue";
        this.#requests.settle(dropped.requestId, new TempestWSError(message, { code: "queue_full" }));
      }
    });
    const { requestTimeout, positions } = checked;
    const write = (/** @type {string} */ frame) => this.#connection.write(frame);
    this.#subscriptions = new Subscriptions({ positions, requests: this.#requests, write, emit, requestTimeout });
    this.#refresh = new TokenRefresh({
      tokenProvider: checked.tokenProvider,
      margin: checked.tokenRefreshMargin,
      isOpen: () => this.#connection.isOpen(),
      socketOpen: () => this.#connection.socketOpen(),
      tokenRequest: () => this.#connection.tokenRequest("refresh"),
      request: (type, data) => this.request(type, data),
      emit,
    });
    const parts = { requests: this.#requests, subscriptions: this.#subscriptions, queue: this.#queue, refresh: this.#refresh };
    this.#connection = new Connection({ url, options: checked, ...parts, emit });
    this.#connection.start();
  }

  /** 0 connecting (or waiting to reconnect), 1 open (hello received), 3 closed. */
  get readyState() {
    return this.#connection.state;
  }

  /** The subprotocol the server selected ("bearer" when a token was sent). */
  get protocol() {
    return this.#connection.protocol;
  }

  /** The server's id for the current connection (from `hello`), or null. */
  get connectionId() {
    return this.#connection.isOpen() ? (this.#connection.hello?.connection_id ?? null) : null;
  }

  /** The data of the last `hello` envelope, or null before the first one. */
  get hello() {
    return this.#connection.hello;
  }

  /**
   * When the open connection's token expires (ms since the epoch): its JWT `exp`, then
   * each refresh's `expires_at`. null when not open or for a token without expiry.
   */
  get tokenExpiresAt() {
    return this.#connection.isOpen() ? this.#refresh.expiresAt : null;
  }

  /** Reconnect attempts since the last connection that stayed up minUptime. */
  get retryCount() {
    return this.#connection.retryCount;
  }

  /** Messages waiting for the connection. */
  get queued() {
    return this.#queue.length;
  }

  /** Topics restored on every reconnect. */
  get subscriptions() {
    return this.#subscriptions.topics;
  }

  /**
   * A copy of the last known position of each topic with history, as a plain object
   * `{topic: {offset, epoch}}` (JSON-ready: give it back as the `positions` option).
   *
   * @returns {Positions}
   */
  get positions() {
    return this.#subscriptions.positions;
  }

  /**
   * `addEventListener` that returns a function removing the listener.
   *
   * @template {keyof TempestWSEventMap} K
   * @param {K} type
   * @param {(event: TempestWSEventMap[K]) => void} listener
   * @returns {() => void}
   */
  on(type, listener) {
    const handler = /** @type {EventListener} */ (listener);
    this.addEventListener(type, handler);
    return () => this.removeEventListener(type, handler);
  }

  /**
   * Send an envelope now, or queue it until the connection is open.
   *
   * @param {string | {type: string, data?: unknown, request_id?: string | null}} type
   * @param {unknown} [data]
   * @returns {boolean} true when written to the socket, false when queued (or dropped).
   * @throws {TempestWSError} code "queue_full" when queueOverflow is "throw".
   */
  send(type, data = {}) {
    const envelope = typeof type === "object" && type !== null ? type : { type, data, request_id: null };
    if (typeof envelope.type !== "string" || !envelope.type) {
      throw new TypeError("TempestWS.send: type must be a non-empty string");
    }
    const frame = encode(envelope.type, envelope.data === undefined ? {} : envelope.data, envelope.request_id ?? null);
    return this.#connection.sendOrQueue(frame, null);
  }

  /**
   * Send `{type, data, request_id}` and resolve with the reply carrying the same
   * request_id (the whole envelope). A reply of type "error" rejects with its
   * data.code/data.message. Rejects with code "timeout" after `timeout` ms (default
   * requestTimeout), "disconnected" when the socket closed after sending it, "closed"
   * when the client is closed, "aborted" on `signal`, "queue_full" when it cannot queue.
   *
   * @template [T=unknown]
   * @param {string} type
   * @param {unknown} [data]
   * @param {RequestOptions} [options]
   * @returns {Promise<Envelope<T>>}
   */
  request(type, data = {}, { timeout = this.#requestTimeout, signal } = {}) {
    const requestId = this.#requests.newId();
    const frame = encode(type, data, requestId);
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new TempestWSError("request aborted", { code: "aborted" }));
        return;
      }
      const answered = /** @type {(envelope: Envelope) => void} */ (resolve);
      this.#requests.add(requestId, { resolve: answered, reject, timeout, timeoutMessage: `no reply to ${type} within ${timeout} ms`, signal });
      try {
        if (this.#connection.sendOrQueue(frame, requestId)) this.#requests.markSent(requestId);
      } catch (error) {
        this.#requests.settle(requestId, /** @type {TempestWSError} */ (error));
      }
    });
  }

  /**
   * Subscribe to `topic`: sends {"type":"subscribe","data":{"topic":topic},"request_id":id}
   * now if open, and again after every reconnect until `unsubscribe(topic)`. When the
   * topic's position is known, `data` also carries its `offset` and `epoch`, and the
   * server replays the messages after it.
   *
   * Returns a Promise settled by the server's answer to the subscribe sent now or, when
   * not open, after the next `hello` (a socket lost before the answer: the one after
   * that). It resolves with the answer envelope (the built-in `ack`); an `error` answer
   * rejects with its code (such as "forbidden"), forgets the topic and fires
   * `subscribeerror`, also for a denial nobody awaits (a resubscribe after a
   * reconnect). It also rejects with "timeout" (no answer within requestTimeout of
   * sending; the topic stays), "unsubscribed", "closed", or the fatal error that
   * stopped the client. Ignoring the Promise is fine: it never causes an unhandled
   * rejection. The answer is also delivered as a `message` event, as before.
   *
   * @param {string} topic
   * @returns {Promise<Envelope<AckData>>}
   */
  subscribe(topic) {
    const answer = this.#subscriptions.add(checkTopic(topic, "subscribe"));
    if (this.#connection.isOpen()) this.#subscriptions.send(topic);
    return answer;
  }

  /**
   * Forget `topic` and its position; send {"type":"unsubscribe",...} if open. A
   * `subscribe(topic)` still waiting for its answer rejects with "unsubscribed".
   *
   * @param {string} topic
   * @returns {boolean} whether it was subscribed
   */
  unsubscribe(topic) {
    const had = this.#subscriptions.remove(topic);
    if (had && this.#connection.isOpen()) this.#connection.write(encode("unsubscribe", { topic }));
    return had;
  }

  /**
   * The users in `topic` (built-in `presence.get`; the connection must be subscribed).
   * Rejects like `request()`, with the server's code: "not_subscribed",
   * "presence_disabled", "unavailable", "invalid_data"; "invalid_reply" when the ack
   * carries no list of users. Throws a TypeError at once for an invalid topic.
   *
   * @param {string} topic
   * @param {RequestOptions} [options]
   * @returns {Promise<string[]>}
   */
  presence(topic, options = {}) {
    return presence((type, data, given) => this.request(type, data, given), topic, options);
  }

  /**
   * Tell the topic's other members (every tab of this user skipped) that this user is
   * typing, or stopped (`typing = false`): built-in `typing`. Resolves with the ack;
   * rejects like `request()` ("not_subscribed", "unavailable", "invalid_data", ...).
   *
   * @param {string} topic
   * @param {boolean} [isTyping]
   * @param {RequestOptions} [options]
   * @returns {Promise<Envelope<AckData>>}
   */
  typing(topic, isTyping = true, options = {}) {
    return typing((type, data, given) => this.request(type, data, given), topic, isTyping, options);
  }

  /**
   * Relay a receipt for `messageId` (a string of 1-128 characters or a safe integer)
   * with `status` (such as "delivered" or "read") to the topic's members: built-in
   * `receipt`. Resolves with the ack; rejects like `request()`.
   *
   * @param {string} topic
   * @param {string | number} messageId
   * @param {string} status
   * @param {RequestOptions} [options]
   * @returns {Promise<Envelope<AckData>>}
   */
  receipt(topic, messageId, status, options = {}) {
    return receipt((type, data, given) => this.request(type, data, given), topic, messageId, status, options);
  }

  /**
   * Refresh the token on the open connection now: asks `tokenProvider` ({reason:
   * "refresh"}) and sends {"type":"auth.refresh","data":{"token":...}}. Resolves with
   * the new expiry (ms since the epoch, or null) once the server acked it, after the
   * `tokenrefresh` event. Rejects with "not_open", "no_token_provider",
   * "token_provider_failed", "invalid_refresh", "timeout" or "disconnected" (a refused
   * token: the server closes 4401 and the client reconnects through the provider).
   * Calls made while a refresh is in flight share it.
   *
   * @returns {Promise<number | null>}
   */
  refreshToken() {
    return this.#refresh.refresh();
  }

  /**
   * Close for good (no reconnect): pending requests reject with code "closed" and
   * queued messages are discarded (a "queue-discarded" warning says how many).
   *
   * @param {number} [code]
   * @param {string} [reason]
   */
  close(code = CloseCode.NORMAL, reason = "") {
    this.#connection.close(code, reason);
  }

  /**
   * Close the current socket (if any) and connect again now with a fresh token and a
   * reset backoff. Also starts a client built with startClosed or stopped by an error.
   */
  reconnect() {
    this.#connection.reconnect();
  }

  /**
   * @param {string} type
   * @param {unknown} detail
   */
  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

export default TempestWS;
