/**
 * tempest-ws.js: the browser client for tempest_ws servers.
 *
 * One dependency-free ES module, served by the router at `GET {path}/client.js`:
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
 *   server has been silent for longer than the heartbeat timeout its `hello` promised;
 * - reconnects by close code (see `closePolicy`), with exponential backoff and full
 *   jitter, a long backoff for 4429/1013 and a limit on consecutive 4401s (a connection
 *   that reaches `hello` ends the streak);
 * - restores its topic subscriptions after every reconnect, then flushes the bounded
 *   queue of messages sent while offline;
 * - remembers the position (`offset`, `epoch`) of the last message it got on each topic
 *   with history and sends it with every `subscribe`, so the server replays what it
 *   missed (a `recovery` event says whether that was possible);
 * - `request(type, data)` returns a Promise settled by the reply carrying the same
 *   `request_id`; `subscribe(topic)` returns one settled by the server's answer, and
 *   `presence`, `typing` and `receipt` wrap the server's built-in operations;
 * - with a `tokenProvider`, it refreshes a JWT before its `exp` on the open connection
 *   (an `auth.refresh` envelope: no reconnect, no resubscribe).
 *
 * Option names follow `reconnecting-websocket` where they overlap. Nothing is logged to
 * the console: problems are reported as `warning` and `error` events.
 */

/** Close codes, mirrored from `tempest_ws/codes.py` (a test keeps the two equal). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  NO_STATUS: 1005,
  ABNORMAL: 1006,
  INVALID_PAYLOAD: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  UNAUTHORIZED: 4401,
  FORBIDDEN: 4403,
  HEARTBEAT_TIMEOUT: 4408,
  TOO_MANY_CONNECTIONS: 4429,
  RATE_LIMITED: 4429, // an alias: 4429 with the reason "rate_limited"
});

/** `readyState` values, as on `WebSocket`. */
export const ReadyState = Object.freeze({ CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });

/** Defaults: safer than reconnecting-websocket's (bounded queue, longer waits). */
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

const BEARER = "bearer";
const MAX_REFRESH_MARGIN = 24 * 3600 * 1000;
const MIN_REFRESH_RETRY = 1000; // a failed refresh is retried at most once a second
const MAX_TOPIC_LENGTH = 256;
const MAX_EPOCH_LENGTH = 64; // as tempest_ws.history accepts them back

const isTopic = (topic) => typeof topic === "string" && topic.length > 0 && topic.length <= MAX_TOPIC_LENGTH;

/** `{offset, epoch}` when both are valid (an integer >= 0, a string of 1-64), else null. */
function positionOf(offset, epoch) {
  if (!Number.isSafeInteger(offset) || offset < 0) return null;
  if (typeof epoch !== "string" || !epoch || epoch.length > MAX_EPOCH_LENGTH) return null;
  return { offset, epoch };
}

/** The valid entries of a `positions` option as a Map; malformed entries are skipped. */
function seedPositions(given) {
  const positions = new Map();
  if (given == null) return positions;
  if (typeof given !== "object" || Array.isArray(given)) {
    throw new TypeError("TempestWS: positions must be an object {topic: {offset, epoch}} or null");
  }
  for (const [topic, position] of Object.entries(given)) {
    const valid = isTopic(topic) && position && typeof position === "object" && positionOf(position.offset, position.epoch);
    if (valid) positions.set(topic, valid);
  }
  return positions;
}

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
 * How long (ms) to wait before refreshing a token that expires in `left` ms: refresh
 * `margin` ms before expiry, but never earlier than half-way, so a token that lives
 * shorter than twice the margin is still used for half its life. `null` for a token
 * already expired (the server closes 4401; the provider runs on the reconnect).
 *
 * @param {number} left ms until expiry
 * @param {number} margin the tokenRefreshMargin option
 * @returns {number | null}
 */
export function refreshDelay(left, margin = DEFAULT_OPTIONS.tokenRefreshMargin) {
  if (!(left > 0)) return null;
  return Math.round(left - Math.min(Math.max(0, margin), left / 2));
}

/** The error type of every rejection and `error` event of this module. */
export class TempestWSError extends Error {
  /**
   * @param {string} message human-readable explanation (never contains a token)
   * @param {{code?: string, closeCode?: number, envelope?: object, cause?: unknown}} [info]
   */
  constructor(message, { code = "error", closeCode, envelope, cause } = {}) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "TempestWSError";
    this.code = code;
    this.closeCode = closeCode;
    this.envelope = envelope;
  }
}

/**
 * What the client does after the socket closed with `code`.
 *
 * @param {number} code the close code
 * @param {boolean} [userInitiated] the application called `close()`
 * @returns {"stop" | "auth" | "long" | "reconnect"}
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
 * @param {object} [options] client options (defaults for those omitted)
 * @param {() => number} [random] a uniform [0, 1) source
 */
export function reconnectDelay(attempt, kind = "reconnect", options = {}, random = Math.random) {
  options = { ...DEFAULT_OPTIONS, ...options };
  const long = kind === "long";
  const floor = long ? options.longReconnectionDelay : options.minReconnectionDelay;
  const cap = long ? options.maxLongReconnectionDelay : options.maxReconnectionDelay;
  const growth = options.reconnectionDelayGrowFactor ** (Math.max(0, attempt) + 1);
  const ceiling = Math.max(floor, Math.min(cap, floor * growth));
  return Math.round(floor + random() * (ceiling - floor));
}

function checkOptions(given) {
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
  for (const key of [
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
  ]) {
    if (typeof options[key] !== "number" || !(options[key] >= 0)) {
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
  options.positions = seedPositions(options.positions);
  options.protocols = [].concat(options.protocols ?? []);
  options.WebSocket = options.WebSocket ?? globalThis.WebSocket;
  if (typeof options.WebSocket !== "function") {
    throw new TypeError("TempestWS: no WebSocket implementation available");
  }
  return options;
}

function resolveUrl(url) {
  const base = globalThis.location?.href;
  const parsed = base ? new URL(url, base) : new URL(url);
  if (parsed.protocol === "http:") parsed.protocol = "ws:";
  if (parsed.protocol === "https:") parsed.protocol = "wss:";
  return parsed.href;
}

const now = () => (globalThis.performance ? performance.now() : Date.now());

// setTimeout fires at once for delays past 2**31 - 1 ms: treat those (and 0) as "never".
const MAX_TIMER_MS = 2 ** 31 - 1;
const startTimer = (callback, ms) => (ms > 0 && ms <= MAX_TIMER_MS ? setTimeout(callback, ms) : null);

function checkTopic(topic, method) {
  if (!isTopic(topic)) {
    throw new TypeError(`TempestWS.${method}: topic must be a string of 1-${MAX_TOPIC_LENGTH} characters`);
  }
  return topic;
}

function randomId() {
  if (globalThis.crypto?.randomUUID) return crypto.randomUUID().replaceAll("-", "").slice(0, 12);
  return Math.random().toString(36).slice(2, 14);
}

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
  #url;
  #options;
  #ws = null;
  #state = ReadyState.CONNECTING;
  #generation = 0;
  #closedByUser = false;
  #retryCount = 0;
  #authFailures = 0;
  #lastClose = null;
  #openedAt = 0;
  #everOpened = false;
  #hello = null;
  #lastSeen = 0;
  #silenceMs = 0;
  #connectTimer = null;
  #silenceTimer = null;
  #reconnectTimer = null;
  #refreshTimer = null;
  #connectExpiry = null; // expiry (ms) of the token offered to the socket being opened
  #expiresAt = null; // expiry (ms) of the open connection's token, or null
  #refreshing = null; // the refresh in flight, shared by concurrent callers
  #subscriptions = new Set();
  #subscribeWaiters = new Map(); // topic -> [{resolve, reject}] of subscribe() calls
  #subscribeIds = new Map(); // topic -> request_id of the latest subscribe sent
  #positions;
  #queue = [];
  #pending = new Map();
  #idPrefix = randomId();
  #nextId = 0;
  #onOnline = () => this.#handleOnline();
  #listening = false;

  /**
   * @param {string | (() => string | Promise<string>)} url ws(s)://, http(s):// or a
   *   path such as "/ws" (resolved against the page); or a function returning one,
   *   called before every connect.
   * @param {object} [options] see DEFAULT_OPTIONS and the .d.ts for each option.
   */
  constructor(url, options = {}) {
    super();
    this.#url = url;
    this.#options = checkOptions(options);
    this.#positions = this.#options.positions;
    if (this.#options.startClosed) {
      this.#state = ReadyState.CLOSED; // messages queue until reconnect() starts it
    } else {
      this.#listen(true);
      this.#connect("connect");
    }
  }

  /** 0 connecting (or waiting to reconnect), 1 open (hello received), 3 closed. */
  get readyState() {
    return this.#state;
  }

  /** The subprotocol the server selected ("bearer" when a token was sent). */
  get protocol() {
    return this.#ws?.protocol ?? "";
  }

  /** The server's id for the current connection (from `hello`), or null. */
  get connectionId() {
    return this.#state === ReadyState.OPEN ? (this.#hello?.connection_id ?? null) : null;
  }

  /** The data of the last `hello` envelope, or null before the first one. */
  get hello() {
    return this.#hello;
  }

  /**
   * When the open connection's token expires (ms since the epoch): its JWT `exp`, then
   * each refresh's `expires_at`. null when not open or for a token without expiry.
   */
  get tokenExpiresAt() {
    return this.#state === ReadyState.OPEN ? this.#expiresAt : null;
  }

  /** Reconnect attempts since the last connection that stayed up minUptime. */
  get retryCount() {
    return this.#retryCount;
  }

  /** Messages waiting for the connection. */
  get queued() {
    return this.#queue.length;
  }

  /** Topics restored on every reconnect. */
  get subscriptions() {
    return [...this.#subscriptions];
  }

  /**
   * A copy of the last known position of each topic with history, as a plain object
   * `{topic: {offset, epoch}}` (JSON-ready: give it back as the `positions` option).
   */
  get positions() {
    return Object.fromEntries([...this.#positions].map(([topic, { offset, epoch }]) => [topic, { offset, epoch }]));
  }

  /** `addEventListener` that returns a function removing the listener. */
  on(type, listener) {
    this.addEventListener(type, listener);
    return () => this.removeEventListener(type, listener);
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
    const envelope = typeof type === "object" && type !== null ? type : { type, data };
    if (typeof envelope.type !== "string" || !envelope.type) {
      throw new TypeError("TempestWS.send: type must be a non-empty string");
    }
    const frame = JSON.stringify({
      type: envelope.type,
      data: envelope.data === undefined ? {} : envelope.data,
      request_id: envelope.request_id ?? null,
    });
    return this.#sendOrQueue(frame, null);
  }

  /**
   * Send `{type, data, request_id}` and resolve with the reply carrying the same
   * request_id (the whole envelope). A reply of type "error" rejects with its
   * data.code/data.message. Rejects with code "timeout" after `timeout` ms (default
   * requestTimeout), "disconnected" when the socket closed after sending it, "closed"
   * when the client is closed, "aborted" on `signal`, "queue_full" when it cannot queue.
   */
  request(type, data = {}, { timeout = this.#options.requestTimeout, signal } = {}) {
    const requestId = this.#newRequestId();
    const frame = JSON.stringify({ type, data, request_id: requestId });
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(new TempestWSError("request aborted", { code: "aborted" }));
        return;
      }
      const entry = { resolve, reject, sent: false, timer: null, signal, onAbort: null };
      entry.timer = startTimer(
        () => this.#settle(requestId, new TempestWSError(`no reply to ${type} within ${timeout} ms`, { code: "timeout" })),
        timeout,
      );
      if (signal) {
        entry.onAbort = () => this.#settle(requestId, new TempestWSError("request aborted", { code: "aborted" }));
        signal.addEventListener("abort", entry.onAbort, { once: true });
      }
      this.#pending.set(requestId, entry);
      try {
        entry.sent = this.#sendOrQueue(frame, requestId);
      } catch (error) {
        this.#settle(requestId, error);
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
   */
  subscribe(topic) {
    if (!isTopic(topic)) {
      throw new TypeError(`TempestWS.subscribe: topic must be a string of 1-${MAX_TOPIC_LENGTH} characters`);
    }
    this.#subscriptions.add(topic);
    const answer = new Promise((resolve, reject) => {
      const waiters = this.#subscribeWaiters.get(topic) ?? [];
      waiters.push({ resolve, reject });
      this.#subscribeWaiters.set(topic, waiters);
    });
    answer.catch(() => {}); // marks it handled; callers that await it still see the rejection
    if (this.#state === ReadyState.OPEN) this.#sendSubscribe(topic);
    return answer;
  }

  /**
   * Forget `topic` and its position; send {"type":"unsubscribe",...} if open. A
   * `subscribe(topic)` still waiting for its answer rejects with "unsubscribed".
   */
  unsubscribe(topic) {
    const had = this.#subscriptions.delete(topic);
    this.#positions.delete(topic);
    this.#subscribeIds.delete(topic);
    this.#settleSubscribe(topic, new TempestWSError(`unsubscribed from ${topic} before the answer`, { code: "unsubscribed" }));
    if (had && this.#state === ReadyState.OPEN) {
      this.#write(JSON.stringify({ type: "unsubscribe", data: { topic }, request_id: null }));
    }
    return had;
  }

  /**
   * The users in `topic` (built-in `presence.get`; the connection must be subscribed).
   * Rejects like `request()`, with the server's code: "not_subscribed",
   * "presence_disabled", "unavailable", "invalid_data"; "invalid_reply" when the ack
   * carries no list of users. Throws a TypeError at once for an invalid topic.
   *
   * @returns {Promise<string[]>}
   */
  presence(topic, options = {}) {
    return this.request("presence.get", { topic: checkTopic(topic, "presence") }, options).then((reply) => {
      const users = reply.data?.users;
      if (!Array.isArray(users) || !users.every((user) => typeof user === "string")) {
        throw new TempestWSError("presence.get ack carries no list of users", { code: "invalid_reply", envelope: reply });
      }
      return users;
    });
  }

  /**
   * Tell the topic's other members (every tab of this user skipped) that this user is
   * typing, or stopped (`typing = false`): built-in `typing`. Resolves with the ack;
   * rejects like `request()` ("not_subscribed", "unavailable", "invalid_data", ...).
   */
  typing(topic, typing = true, options = {}) {
    return this.request("typing", { topic: checkTopic(topic, "typing"), typing: Boolean(typing) }, options);
  }

  /**
   * Relay a receipt for `messageId` (a string of 1-128 characters or a safe integer)
   * with `status` (such as "delivered" or "read") to the topic's members: built-in
   * `receipt`. Resolves with the ack; rejects like `request()`.
   */
  receipt(topic, messageId, status, options = {}) {
    const data = { topic: checkTopic(topic, "receipt"), message_id: messageId, status };
    return this.request("receipt", data, options);
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
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /**
   * Close for good (no reconnect): pending requests reject with code "closed" and
   * queued messages are discarded (a "queue-discarded" warning says how many).
   */
  close(code = CloseCode.NORMAL, reason = "") {
    if (this.#closedByUser) return;
    this.#closedByUser = true;
    this.#stop(new TempestWSError("client closed", { code: "closed" }));
    const ws = this.#detach();
    if (ws) {
      try {
        ws.close(code, reason);
      } catch {
        ws.close();
      }
    }
    this.#emit("close", { code, reason, wasClean: true, willReconnect: false });
  }

  /**
   * Close the current socket (if any) and connect again now with a fresh token and a
   * reset backoff. Also starts a client built with startClosed or stopped by an error.
   */
  reconnect() {
    this.#closedByUser = false;
    this.#retryCount = 0;
    this.#authFailures = 0;
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    const ws = this.#detach();
    if (ws) {
      ws.close(CloseCode.NORMAL, "reconnect");
      this.#emit("close", { code: CloseCode.NORMAL, reason: "reconnect", wasClean: true, willReconnect: true });
    }
    this.#listen(true);
    this.#connect("reconnect");
  }

  // -- connection ---------------------------------------------------------------------

  async #connect(reason) {
    const generation = ++this.#generation;
    this.#state = ReadyState.CONNECTING;
    this.#hello = null;
    let url;
    let protocols;
    try {
      const rawUrl = typeof this.#url === "function" ? await this.#url() : this.#url;
      const token = await this.#token(reason);
      if (generation !== this.#generation) return;
      this.#connectExpiry = tokenExpiry(token);
      url = resolveUrl(rawUrl);
      protocols = token ? [BEARER, String(token), ...this.#options.protocols] : [...this.#options.protocols];
    } catch (cause) {
      if (generation !== this.#generation) return;
      this.#emit("error", {
        error: new TempestWSError(`could not get the URL or token: ${cause?.message ?? cause}`, {
          code: "token_provider_failed",
          cause,
        }),
        fatal: false,
      });
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

  async #token(reason) {
    const { token, tokenProvider } = this.#options;
    if (tokenProvider) {
      return tokenProvider({ reason, attempt: this.#retryCount, closeCode: this.#lastClose });
    }
    return token;
  }

  #onFrame(event) {
    this.#lastSeen = now();
    if (typeof event.data !== "string") {
      this.#emit("warning", { kind: "invalid-frame", message: "binary frame ignored" });
      return;
    }
    let envelope;
    try {
      envelope = JSON.parse(event.data);
    } catch {
      envelope = null;
    }
    if (!envelope || typeof envelope !== "object" || typeof envelope.type !== "string") {
      this.#emit("warning", { kind: "invalid-frame", message: "frame is not an envelope" });
      return;
    }
    // Read before any listener can touch the envelope; applied after they ran.
    const position = isTopic(envelope.topic) ? positionOf(envelope.offset, envelope.epoch) : null;
    this.#route(envelope);
    if (position) this.#track(envelope.topic, position);
  }

  /** Move `topic`'s position, unless the topic is no longer (or was never) subscribed. */
  #track(topic, position) {
    if (this.#subscriptions.has(topic)) this.#positions.set(topic, position);
  }

  #route(envelope) {
    switch (envelope.type) {
      case "ping":
        this.#write(JSON.stringify({ type: "pong", data: {}, request_id: envelope.request_id ?? null }));
        return;
      case "pong":
        return;
      case "hello":
        this.#onHello(envelope.data ?? {});
        return;
      case "resync":
        this.#emit("resync", envelope);
        return;
      case "recovery":
        this.#onRecovery(envelope);
        return;
    }
    const requestId = envelope.request_id;
    const entry = requestId != null && this.#pending.get(requestId);
    if (entry) {
      if (envelope.type === "error") {
        const info = envelope.data ?? {};
        const message = typeof info.message === "string" ? info.message : "request failed";
        this.#settle(requestId, new TempestWSError(message, { code: String(info.code ?? "error"), envelope }));
      } else {
        this.#settle(requestId, null, envelope);
      }
      if (!entry.alsoMessage) return;
    }
    this.#emit("message", envelope);
  }

  #onRecovery(envelope) {
    const data = envelope.data ?? {};
    const position = positionOf(data.offset, data.epoch);
    const replayed = data.replayed ?? 0;
    if (!isTopic(data.topic) || typeof data.recovered !== "boolean" || !position || !Number.isSafeInteger(replayed) || replayed < 0) {
      this.#emit("warning", { kind: "invalid-frame", message: "malformed recovery envelope" });
      return;
    }
    const { topic, recovered } = data;
    this.#emit("recovery", { topic, recovered, replayed, offset: position.offset, epoch: position.epoch });
    this.#track(topic, position);
  }

  #onHello(hello) {
    clearTimeout(this.#connectTimer);
    this.#hello = hello;
    const promised = Number(hello.heartbeat_timeout_seconds) * 1000;
    this.#silenceMs = this.#options.silenceTimeout ?? (promised > 0 ? promised : 0);
    this.#armSilence(this.#silenceMs);
    this.#state = ReadyState.OPEN;
    this.#openedAt = now();
    this.#authFailures = 0;
    this.#expiresAt = this.#connectExpiry;
    this.#armRefresh(false);
    const reconnected = this.#everOpened;
    this.#everOpened = true;
    // Subscriptions first, so queued messages that depend on them arrive after them.
    for (const topic of this.#subscriptions) this.#sendSubscribe(topic);
    while (this.#queue.length && this.#state === ReadyState.OPEN) {
      const item = this.#queue.shift();
      this.#write(item.frame);
      const entry = item.requestId && this.#pending.get(item.requestId);
      if (entry) entry.sent = true;
    }
    this.#emit("open", { connectionId: hello.connection_id ?? null, hello, reconnected });
  }

  #armSilence(delay) {
    clearTimeout(this.#silenceTimer);
    if (!this.#silenceMs) return;
    this.#silenceTimer = startTimer(() => {
      const idle = now() - this.#lastSeen;
      if (idle >= this.#silenceMs) this.#drop(CloseCode.HEARTBEAT_TIMEOUT, "server silent");
      else this.#armSilence(Math.max(1, this.#silenceMs - idle));
    }, delay);
  }

  /** Give up on the current socket now (without waiting for a close handshake). */
  #drop(code, reason) {
    const ws = this.#detach();
    if (!ws) return;
    try {
      ws.close(code, reason);
    } catch {
      ws.close();
    }
    this.#onSocketClose(code, reason, false, true);
  }

  #detach() {
    clearTimeout(this.#connectTimer);
    clearTimeout(this.#silenceTimer);
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    this.#expiresAt = null;
    const ws = this.#ws;
    this.#ws = null;
    if (ws) ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
    return ws;
  }

  #onSocketClose(code, reason, wasClean, alreadyDetached = false) {
    if (!alreadyDetached) this.#detach();
    this.#afterClose(code, reason, wasClean);
  }

  #afterClose(code, reason, wasClean = false) {
    if (this.#openedAt && now() - this.#openedAt >= this.#options.minUptime) this.#retryCount = 0;
    this.#openedAt = 0;
    this.#lastClose = code;
    if (this.#state === ReadyState.OPEN) this.#state = ReadyState.CONNECTING;
    for (const [requestId, entry] of this.#pending) {
      if (entry.sent) {
        this.#settle(requestId, new TempestWSError("connection closed before the reply", { code: "disconnected", closeCode: code }));
      }
    }
    const policy = closePolicy(code, this.#closedByUser);
    let fatal = null;
    if (policy === "stop" && !this.#closedByUser) {
      fatal = new TempestWSError(`server closed the connection with ${code} (${reason || "no reason"}); not reconnecting`, {
        code: "closed_by_server",
        closeCode: code,
      });
    } else if (policy === "auth" && ++this.#authFailures >= this.#options.maxAuthFailures) {
      fatal = new TempestWSError(`authentication failed: ${this.#authFailures} consecutive 4401 closes; giving up`, {
        code: "auth_failed",
        closeCode: code,
      });
    }
    if (!fatal && policy !== "stop" && this.#retryCount >= this.#options.maxRetries) {
      fatal = new TempestWSError(`gave up after ${this.#retryCount} reconnect attempts`, { code: "max_retries", closeCode: code });
    }
    const willReconnect = policy !== "stop" && !fatal;
    this.#emit("close", { code, reason, wasClean, willReconnect });
    if (fatal) {
      this.#state = ReadyState.CLOSED;
      this.#stop(fatal);
      this.#emit("error", { error: fatal, fatal: true });
      return;
    }
    if (!willReconnect) {
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
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#connect("reconnect");
  }

  /** Stop timers and listeners, reject every pending request, discard the queue. */
  #stop(error) {
    clearTimeout(this.#reconnectTimer);
    this.#reconnectTimer = null;
    this.#generation++;
    this.#state = ReadyState.CLOSED;
    this.#listen(false);
    for (const requestId of [...this.#pending.keys()]) this.#settle(requestId, error);
    for (const topic of [...this.#subscribeWaiters.keys()]) this.#settleSubscribe(topic, error);
    if (this.#queue.length) {
      const count = this.#queue.length;
      this.#queue = [];
      this.#emit("warning", { kind: "queue-discarded", count });
    }
  }

  #listen(on) {
    const target = globalThis;
    if (!this.#options.reconnectOnOnline || typeof target.addEventListener !== "function") return;
    if (on && !this.#listening) target.addEventListener("online", this.#onOnline);
    if (!on && this.#listening) target.removeEventListener("online", this.#onOnline);
    this.#listening = on;
  }

  // -- sending ------------------------------------------------------------------------

  #write(frame) {
    this.#ws.send(frame);
  }

  #newRequestId() {
    return `${this.#idPrefix}-${++this.#nextId}`;
  }

  #sendSubscribe(topic) {
    const position = this.#positions.get(topic);
    const data = position ? { topic, offset: position.offset, epoch: position.epoch } : { topic };
    const requestId = this.#newRequestId();
    this.#subscribeIds.set(topic, requestId);
    const entry = {
      resolve: (envelope) => {
        if (this.#subscribeIds.get(topic) === requestId) this.#settleSubscribe(topic, null, envelope);
      },
      reject: (error) => this.#subscribeFailed(topic, requestId, error),
      sent: true,
      timer: null,
      signal: null,
      onAbort: null,
      alsoMessage: true, // the answer is a message event too, as it was before subscribe() awaited it
    };
    const timeout = this.#options.requestTimeout;
    entry.timer = startTimer(
      () => this.#settle(requestId, new TempestWSError(`no answer to subscribe ${topic} within ${timeout} ms`, { code: "timeout" })),
      timeout,
    );
    this.#pending.set(requestId, entry);
    this.#write(JSON.stringify({ type: "subscribe", data, request_id: requestId }));
  }

  #subscribeFailed(topic, requestId, error) {
    // Lost with its socket: the subscribe is sent again after the next hello.
    if (error.code === "disconnected") return;
    // Superseded by a newer subscribe (or by unsubscribe): the topic awaits that answer.
    if (this.#subscribeIds.get(topic) !== requestId) return;
    if (error.envelope) {
      // The server refused it.
      this.#subscribeIds.delete(topic);
      this.#subscriptions.delete(topic);
      this.#positions.delete(topic);
      this.#emit("subscribeerror", { topic, error });
    }
    this.#settleSubscribe(topic, error);
  }

  /** Settle every `subscribe(topic)` Promise still waiting. */
  #settleSubscribe(topic, error, envelope) {
    const waiters = this.#subscribeWaiters.get(topic);
    if (!waiters) return;
    this.#subscribeWaiters.delete(topic);
    for (const { resolve, reject } of waiters) {
      if (error) reject(error);
      else resolve(envelope);
    }
  }

  // -- token refresh ------------------------------------------------------------------

  /**
   * Schedule the next proactive refresh of the open connection's token: at
   * refreshDelay() before its expiry, or (`retry`, after a failed refresh) no sooner
   * than MIN_REFRESH_RETRY and only while the token is still valid by then.
   */
  #armRefresh(retry) {
    clearTimeout(this.#refreshTimer);
    this.#refreshTimer = null;
    const { tokenProvider, tokenRefreshMargin } = this.#options;
    if (!tokenProvider || tokenRefreshMargin == null || this.#expiresAt == null) return;
    const left = this.#expiresAt - Date.now(); // exp is wall-clock time
    let delay = refreshDelay(left, tokenRefreshMargin);
    if (delay == null) return;
    if (retry) {
      delay = Math.max(delay, MIN_REFRESH_RETRY);
      if (delay >= left) return; // too late: the server closes 4401, the provider runs on reconnect
    }
    const generation = this.#generation;
    this.#refreshTimer = setTimeout(() => {
      this.#refreshTimer = null;
      if (generation !== this.#generation || this.#state !== ReadyState.OPEN) return;
      if (delay > MAX_TIMER_MS) {
        this.#armRefresh(retry); // beyond one setTimeout: wait again
        return;
      }
      this.refreshToken().catch((error) => {
        if (generation !== this.#generation || this.#state !== ReadyState.OPEN) return;
        this.#emit("error", { error, fatal: false });
        this.#armRefresh(true);
      });
    }, Math.min(delay, MAX_TIMER_MS));
  }

  async #refresh() {
    const { tokenProvider } = this.#options;
    if (!tokenProvider) throw new TempestWSError("refreshToken() needs a tokenProvider", { code: "no_token_provider" });
    if (this.#state !== ReadyState.OPEN) throw new TempestWSError("no open connection to refresh", { code: "not_open" });
    const generation = this.#generation;
    let token;
    try {
      token = await tokenProvider({ reason: "refresh", attempt: this.#retryCount, closeCode: this.#lastClose });
    } catch (cause) {
      throw new TempestWSError("the token provider failed to refresh the token", { code: "token_provider_failed", cause });
    }
    if (!token) throw new TempestWSError("the token provider returned no token to refresh with", { code: "token_provider_failed" });
    // Never queued: a token meant for this connection is no use to the next one.
    if (generation !== this.#generation || this.#state !== ReadyState.OPEN || this.#ws?.readyState !== ReadyState.OPEN) {
      throw new TempestWSError("the connection changed during the refresh", { code: "disconnected" });
    }
    const reply = await this.request("auth.refresh", { token: String(token) });
    const seconds = reply.data?.expires_at;
    const expiresAt = typeof seconds === "number" && Number.isFinite(seconds) ? seconds * 1000 : null;
    if (generation !== this.#generation) return expiresAt; // acked, then the socket went
    const previous = this.#expiresAt;
    this.#expiresAt = expiresAt;
    this.#emit("tokenrefresh", { expiresAt });
    if (expiresAt != null && previous != null && expiresAt <= previous) {
      // The provider gave a token no newer than the last: refreshing again would loop.
      clearTimeout(this.#refreshTimer);
      this.#refreshTimer = null;
      this.#emit("warning", { kind: "token-not-renewed", expiresAt });
    } else {
      this.#armRefresh(false);
    }
    return expiresAt;
  }

  #sendOrQueue(frame, requestId) {
    if (this.#closedByUser) throw new TempestWSError("client is closed", { code: "closed" });
    // A socket the server is already closing drops what we write: queue it instead.
    if (this.#state === ReadyState.OPEN && this.#ws?.readyState === ReadyState.OPEN) {
      this.#write(frame);
      return true;
    }
    const limit = this.#options.maxEnqueuedMessages;
    if (this.#queue.length >= limit) {
      if (this.#options.queueOverflow === "throw") {
        throw new TempestWSError(`send queue full (${limit} messages)`, { code: "queue_full" });
      }
      if (limit === 0) {
        this.#emit("warning", { kind: "queue-overflow", dropped: frame, limit });
        if (requestId) this.#settle(requestId, new TempestWSError("send queue full", { code: "queue_full" }));
        return false;
      }
      const dropped = this.#queue.shift();
      this.#emit("warning", { kind: "queue-overflow", dropped: dropped.frame, limit });
      if (dropped.requestId) {
        this.#settle(dropped.requestId, new TempestWSError("dropped from a full send queue", { code: "queue_full" }));
      }
    }
    this.#queue.push({ frame, requestId });
    return false;
  }

  #settle(requestId, error, envelope) {
    const entry = this.#pending.get(requestId);
    if (!entry) return;
    this.#pending.delete(requestId);
    clearTimeout(entry.timer);
    if (entry.onAbort) entry.signal.removeEventListener("abort", entry.onAbort);
    if (error) {
      const index = this.#queue.findIndex((item) => item.requestId === requestId);
      if (index !== -1) this.#queue.splice(index, 1);
      entry.reject(error);
    } else {
      entry.resolve(envelope);
    }
  }

  #emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}

export default TempestWS;
