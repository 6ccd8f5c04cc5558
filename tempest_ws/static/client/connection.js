// The connection: one socket at a time, opened, watched, and replaced after a close.

import { subprotocols, tokenExpiry } from "./auth.js";
import { closeDecision, reconnectDelay } from "./backoff.js";
import { CloseCode, ReadyState } from "./codes.js";
import { encode, parseFrame, stampOf } from "./envelope.js";
import { TempestWSError } from "./errors.js";
import { OnlineWatch, SilenceWatch } from "./heartbeat.js";
import { recoveryOf } from "./history.js";
import { MAX_TIMER_MS, now, resolveUrl, startTimer, stopTimer } from "./runtime.js";

/**
 * @import { Envelope, Hello, TokenRequest } from "../tempest-ws.js"
 * @import { TokenRefresh } from "./auth.js"
 * @import { Options } from "./options.js"
 * @import { OfflineQueue, Queued } from "./queue.js"
 * @import { Requests } from "./requests.js"
 * @import { Subscriptions } from "./subscriptions.js"
 */

/** @typedef {string | URL | (() => string | URL | Promise<string | URL>)} Url */

/**
 * The life of a client's connection: CONNECTING (opening a socket, or waiting out a
 * backoff), OPEN (the server's `hello` arrived), CLOSED (stopped by `close()` or a fatal
 * error). It opens each socket with a fresh token, handles the frames that keep a
 * connection alive (`hello`, `ping`, `recovery`), decides after each close whether and
 * when to reconnect, and hands every other envelope to the requests, then to the
 * client's `message` event.
 */
export class Connection {
  #url;
  #options;
  #requests;
  #subscriptions;
  #queue;
  #refresh;
  #emit;
  /** @type {WebSocket | null} */
  #ws = null;
  /** @type {0 | 1 | 2 | 3} */
  #state = ReadyState.CONNECTING;
  #generation = 0; // changes with every connect and stop, so stale callbacks do nothing
  #closedByUser = false;
  #retryCount = 0;
  #authFailures = 0;
  /** @type {number | null} */
  #lastClose = null;
  #openedAt = 0;
  #everOpened = false;
  /** @type {Hello | null} */
  #hello = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #connectTimer = null;
  /** @type {ReturnType<typeof setTimeout> | null} */
  #reconnectTimer = null;
  /** @type {number | null} expiry (ms) of the token offered to the socket being opened */
  #connectExpiry = null;
  #silence = new SilenceWatch(() => this.#drop(CloseCode.HEARTBEAT_TIMEOUT, "server silent"));
  /** @type {OnlineWatch} */
  #online;

  /**
   * @param {{url: Url, options: Options, requests: Requests, subscriptions: Subscriptions,
   *   queue: OfflineQueue, refresh: TokenRefresh, emit: (type: string, detail: unknown) => void}} parts
   *   `emit` fires an event of the client.
   */
  constructor({ url, options, requests, subscriptions, queue, refresh, emit }) {
    this.#url = url;
    this.#options = options;
    this.#requests = requests;
    this.#subscriptions = subscriptions;
    this.#queue = queue;
    this.#refresh = refresh;
    this.#emit = emit;
    this.#online = new OnlineWatch(options.reconnectOnOnline, () => this.#handleOnline());
  }

  /** Connect, or (with startClosed) wait for reconnect(): messages queue meanwhile. */
  start() {
    if (this.#options.startClosed) {
      this.#state = ReadyState.CLOSED;
    } else {
      this.#online.listen(true);
      this.#connect("connect");
    }
  }

  /** 0 connecting (or waiting to reconnect), 1 open (hello received), 3 closed. */
  get state() {
    return this.#state;
  }

  /** The subprotocol the server selected, or "". */
  get protocol() {
    return this.#ws?.protocol ?? "";
  }

  /** The data of the last `hello`, or null. */
  get hello() {
    return this.#hello;
  }

  get retryCount() {
    return this.#retryCount;
  }

  isOpen() {
    return this.#state === ReadyState.OPEN;
  }

  /** The socket is open, not closing: what is written now reaches the server. */
  socketOpen() {
    return this.#ws?.readyState === ReadyState.OPEN;
  }

  /** @param {TokenRequest["reason"]} reason @returns {TokenRequest} what to ask the token provider */
  tokenRequest(reason) {
    return { reason, attempt: this.#retryCount, closeCode: this.#lastClose };
  }

  /** @param {string} frame written to the socket (which must be there) */
  write(frame) {
    /** @type {WebSocket} */ (this.#ws).send(frame);
  }

  /**
   * Write `frame` now (true) when open, else queue it (false).
   *
   * @param {string} frame
   * @param {string | null} requestId the request waiting for a reply to it, if any
   * @returns {boolean}
   * @throws {TempestWSError} "closed" after close(); "queue_full" from the queue.
   */
  sendOrQueue(frame, requestId) {
    if (this.#closedByUser) throw new TempestWSError("client is closed", { code: "closed" });
    // A socket the server is already closing drops what we write: queue it instead.
    if (this.#state === ReadyState.OPEN && this.socketOpen()) {
      this.write(frame);
      return true;
    }
    return this.#queue.push(frame, requestId);
  }

  /**
   * Close for good (see TempestWS.close).
   *
   * @param {number} code
   * @param {string} reason
   */
  close(code, reason) {
    if (this.#closedByUser) return;
    this.#closedByUser = true;
    this.#stop(new TempestWSError("client closed", { code: "closed" }));
    const ws = this.#detach();
    if (ws) closeSocket(ws, code, reason);
    this.#emit("close", { code, reason, wasClean: true, willReconnect: false });
  }

  /** Reconnect now (see TempestWS.reconnect). */
  reconnect() {
    this.#closedByUser = false;
    this.#retryCount = 0;
    this.#authFailures = 0;
    stopTimer(this.#reconnectTimer);
    this.#reconnectTimer = null;
    const ws = this.#detach();
    if (ws) {
      ws.close(CloseCode.NORMAL, "reconnect");
      this.#emit("close", { code: CloseCode.NORMAL, reason: "reconnect", wasClean: true, willReconnect: true });
    }
    this.#online.listen(true);
    this.#connect("reconnect");
  }

  /** @param {TokenRequest["reason"]} reason */
  async #connect(reason) {
    const generation = ++this.#generation;
    this.#state = ReadyState.CONNECTING;
    this.#hello = null;
    let url;
    let protocols;
    try {
      const rawUrl = typeof this.#url === "function" ? await this.#url() : this.#url;
      const offered = await this.#token(reason);
      if (generation !== this.#generation) return;
      this.#connectExpiry = tokenExpiry(offered);
      url = resolveUrl(rawUrl);
      protocols = subprotocols(offered, this.#options.protocols);
    } catch (cause) {
      if (generation !== this.#generation) return;
      const message = `could not get the URL or token: ${/** @type {Error | undefined} */ (cause)?.message ?? cause}`;
      this.#emit("error", { error: new TempestWSError(message, { code: "token_provider_failed", cause }), fatal: false });
      this.#afterClose(CloseCode.ABNORMAL, "token provider failed");
      return;
    }
    let ws;
    try {
      ws = new this.#options.WebSocket(url, protocols);
    } catch (cause) {
      this.#emit("error", { error: new TempestWSError(`cannot open ${url}`, { code: "connect_failed", cause }), fatal: false });
      this.#afterClose(CloseCode.ABNORMAL, "connect failed");
      return;
    }
    this.#ws = ws;
    ws.onmessage = (event) => this.#onFrame(event);
    ws.onclose = (event) => this.#onSocketClose(event.code, event.reason, event.wasClean);
    ws.onerror = () => {}; // a close event with the details always follows
    this.#connectTimer = startTimer(() => this.#drop(CloseCode.ABNORMAL, "connection timeout"), this.#options.connectionTimeout);
  }

  /** @param {TokenRequest["reason"]} reason */
  async #token(reason) {
    const { token, tokenProvider } = this.#options;
    if (tokenProvider) return tokenProvider(this.tokenRequest(reason));
    return token;
  }

  /** @param {MessageEvent} event */
  #onFrame(event) {
    this.#silence.seen();
    const envelope = parseFrame(event.data);
    if (typeof envelope === "string") {
      this.#emit("warning", { kind: "invalid-frame", message: envelope });
      return;
    }
    // Read before any listener can touch the envelope; applied after they ran.
    const stamp = stampOf(envelope);
    this.#route(envelope);
    if (stamp) this.#subscriptions.track(stamp.topic, stamp.position);
  }

  /** @param {Envelope} envelope */
  #route(envelope) {
    switch (envelope.type) {
      case "ping":
        this.write(encode("pong", {}, envelope.request_id ?? null));
        return;
      case "pong":
        return;
      case "hello":
        this.#onHello(/** @type {Hello} */ (envelope.data ?? {}));
        return;
      case "resync":
        this.#emit("resync", envelope);
        return;
      case "recovery":
        this.#onRecovery(envelope);
        return;
    }
    if (this.#requests.answer(envelope)) return;
    this.#emit("message", envelope);
  }

  /** @param {Envelope} envelope */
  #onRecovery(envelope) {
    const recovery = recoveryOf(envelope.data);
    if (!recovery) {
      this.#emit("warning", { kind: "invalid-frame", message: "malformed recovery envelope" });
      return;
    }
    this.#emit("recovery", recovery);
    this.#subscriptions.track(recovery.topic, { offset: recovery.offset, epoch: recovery.epoch });
  }

  /** @param {Hello} hello */
  #onHello(hello) {
    stopTimer(this.#connectTimer);
    this.#hello = hello;
    const promised = Number(hello.heartbeat_timeout_seconds) * 1000;
    this.#silence.start(this.#options.silenceTimeout ?? (promised > 0 ? promised : 0));
    this.#state = ReadyState.OPEN;
    this.#openedAt = now();
    this.#authFailures = 0;
    this.#refresh.start(this.#connectExpiry);
    const reconnected = this.#everOpened;
    this.#everOpened = true;
    // Subscriptions first, so queued messages that depend on them arrive after them.
    this.#subscriptions.sendAll();
    while (this.#queue.length && this.#state === ReadyState.OPEN) {
      const item = /** @type {Queued} */ (this.#queue.shift());
      this.write(item.frame);
      this.#requests.markSent(item.requestId);
    }
    this.#emit("open", { connectionId: hello.connection_id ?? null, hello, reconnected });
  }

  /**
   * Give up on the current socket now (without waiting for a close handshake).
   *
   * @param {number} code
   * @param {string} reason
   */
  #drop(code, reason) {
    const ws = this.#detach();
    if (!ws) return;
    closeSocket(ws, code, reason);
    this.#afterClose(code, reason, false);
  }

  #detach() {
    stopTimer(this.#connectTimer);
    this.#silence.stop();
    this.#refresh.stop();
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    return ws;
  }

  /** @param {number} code @param {string} reason @param {boolean} wasClean */
  #onSocketClose(code, reason, wasClean) {
    this.#detach();
    this.#afterClose(code, reason, wasClean);
  }

  /**
   * @param {number} code
   * @param {string} reason
   * @param {boolean} [wasClean]
   */
  #afterClose(code, reason, wasClean = false) {
    if (this.#openedAt && now() - this.#openedAt >= this.#options.minUptime) this.#retryCount = 0;
    this.#openedAt = 0;
    this.#lastClose = code;
    if (this.#state === ReadyState.OPEN) this.#state = ReadyState.CONNECTING;
    this.#requests.disconnected(code);
    const { maxAuthFailures, maxRetries } = this.#options;
    const userInitiated = this.#closedByUser;
    const decision = closeDecision({ code, reason, userInitiated, authFailures: this.#authFailures, retryCount: this.#retryCount, maxAuthFailures, maxRetries });
    const { policy, fatal } = decision;
    this.#authFailures = decision.authFailures;
    const willReconnect = policy !== "stop" && !fatal;
    this.#emit("close", { code, reason, wasClean, willReconnect });
    if (fatal) {
      this.#state = ReadyState.CLOSED;
      this.#stop(fatal);
      this.#emit("error", { error: fatal, fatal: true });
      return;
    }
    if (policy === "stop") {
      this.#state = ReadyState.CLOSED;
      return;
    }
    const delay = reconnectDelay(this.#retryCount, policy, this.#options);
    const attempt = ++this.#retryCount;
    const generation = ++this.#generation;
    this.#reconnectTimer = setTimeout(() => {
      this.#reconnectTimer = null;
      if (generation === this.#generation) this.#connect(policy === "auth" ? "unauthorized" : "reconnect");
    }, Math.min(delay, MAX_TIMER_MS));
    this.#emit("reconnecting", { attempt, delay, code, reason });
  }

  #handleOnline() {
    // Back online while waiting out a backoff: try now instead of after the delay.
    if (this.#reconnectTimer === null || this.#closedByUser) return;
    stopTimer(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#connect("reconnect");
  }

  /**
   * Stop timers and listeners, reject every pending request, discard the queue.
   *
   * @param {TempestWSError} error
   */
  #stop(error) {
    stopTimer(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#generation++;
    this.#state = ReadyState.CLOSED;
    this.#online.listen(false);
    this.#requests.rejectAll(error);
    this.#subscriptions.rejectAll(error);
    const count = this.#queue.clear();
    if (count) this.#emit("warning", { kind: "queue-discarded", count });
  }
}

/**
 * Close `ws` with `code` and `reason`, or without them when the browser refuses them (a
 * code it does not allow an application to send).
 *
 * @param {WebSocket} ws
 * @param {number} code
 * @param {string} reason
 */
function closeSocket(ws, code, reason) {
  try {
    ws.close(code, reason);
  } catch {
    ws.close();
  }
}
