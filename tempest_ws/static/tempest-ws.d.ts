// Type declarations for tempest-ws.js, the browser client of tempest_ws: the one file, and the
// ES modules in client/ it is built from (they export the same names).

/** Close codes, mirrored from tempest_ws/codes.py. */
export declare const CloseCode: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  PROTOCOL_ERROR: 1002;
  UNSUPPORTED_DATA: 1003;
  NO_STATUS: 1005;
  ABNORMAL: 1006;
  INVALID_PAYLOAD: 1007;
  POLICY_VIOLATION: 1008;
  MESSAGE_TOO_BIG: 1009;
  INTERNAL_ERROR: 1011;
  SERVICE_RESTART: 1012;
  TRY_AGAIN_LATER: 1013;
  UNAUTHORIZED: 4401;
  FORBIDDEN: 4403;
  HEARTBEAT_TIMEOUT: 4408;
  TOO_MANY_CONNECTIONS: 4429;
  /** An alias of 4429, closed with the reason "rate_limited". */
  RATE_LIMITED: 4429;
}>;

/** `readyState` values, as on WebSocket. */
export declare const ReadyState: Readonly<{ CONNECTING: 0; OPEN: 1; CLOSING: 2; CLOSED: 3 }>;

/** Every frame in either direction. */
export interface Envelope<T = unknown> {
  type: string;
  data: T;
  request_id: string | null;
  /** On a message of a topic with history: its topic (with `offset` and `epoch`). */
  topic?: string;
  /** On a message of a topic with history: its offset within `epoch` (1, 2, 3, ...). */
  offset?: number;
  /** On a message of a topic with history: the epoch its offset counts in (opaque). */
  epoch?: string;
}

/**
 * Where a message sits in its topic's history: `offset` within `epoch`. `offset` is an
 * integer >= 0 (0: before the epoch's first message); `epoch` an opaque string of 1 to
 * 64 characters.
 */
export interface Position {
  offset: number;
  epoch: string;
}

/** The last known position of each topic: `{topic: {offset, epoch}}`, JSON-ready. */
export type Positions = Record<string, Position>;

/** The data of the server's first frame. */
export interface Hello {
  connection_id?: string;
  heartbeat_seconds?: number;
  heartbeat_timeout_seconds?: number;
  max_message_bytes?: number;
  [key: string]: unknown;
}

export interface TokenRequest {
  /**
   * "connect" (first), "reconnect", "unauthorized" (the last close was 4401: never
   * return the refused token again), or "refresh" (the open connection's token nears
   * its expiry, or refreshToken() was called: return a token that expires later).
   */
  reason: "connect" | "reconnect" | "unauthorized" | "refresh";
  /** Reconnect attempts so far (0 for the first connect). */
  attempt: number;
  /** Code of the last close, or null. */
  closeCode: number | null;
}

export interface TempestWSOptions {
  /** A fixed token, sent as the subprotocols ["bearer", token]. */
  token?: string | null;
  /**
   * Called before every connect and reconnect; its token is sent as ["bearer", token].
   * Also called with reason "refresh" before the open connection's JWT expires (see
   * tokenRefreshMargin); that token is sent in an `auth.refresh` envelope.
   */
  tokenProvider?: ((request: TokenRequest) => string | null | Promise<string | null>) | null;
  /**
   * With a tokenProvider: refresh the token on the open connection this many ms before
   * it expires (its JWT `exp`, then each refresh ack's `expires_at`), but never before
   * half its remaining life. Opaque tokens (no `exp`) are never refreshed proactively.
   * null: no proactive refresh. Between 0 and 86400000. Default 30000.
   */
  tokenRefreshMargin?: number | null;
  /** Extra subprotocols offered after ["bearer", token]. Default []. */
  protocols?: string | string[];
  /** Floor (ms) of every reconnect delay. Default 1000. */
  minReconnectionDelay?: number;
  /** Largest reconnect delay (ms). Default 30000. */
  maxReconnectionDelay?: number;
  /** Growth of the delay's ceiling per attempt. Default 2. */
  reconnectionDelayGrowFactor?: number;
  /** Floor (ms) of the delay after 4429 or 1013. Default 5000. */
  longReconnectionDelay?: number;
  /** Largest delay (ms) after 4429 or 1013. Default 120000. */
  maxLongReconnectionDelay?: number;
  /** A connection up this long (ms) resets the backoff. Default 5000. */
  minUptime?: number;
  /** Time (ms) from opening the socket to the server's hello before retrying (0: no limit). Default 10000. */
  connectionTimeout?: number;
  /** Consecutive reconnect attempts before giving up (error "max_retries"). Default Infinity. */
  maxRetries?: number;
  /** Consecutive 4401 closes before giving up (error "auth_failed"). Default 3. */
  maxAuthFailures?: number;
  /** Messages kept while not connected. Default 100. */
  maxEnqueuedMessages?: number;
  /** When the queue is full: drop the oldest (and emit "warning") or throw. Default "drop-oldest". */
  queueOverflow?: "drop-oldest" | "throw";
  /** Default request() timeout (ms; 0 or Infinity: none). Default 10000. */
  requestTimeout?: number;
  /** Silence (ms) after which the socket is dropped; default: the hello's heartbeat_timeout_seconds. */
  silenceTimeout?: number | null;
  /** Reconnect at once when the browser fires "online" during a backoff. Default true. */
  reconnectOnOnline?: boolean;
  /** Do not connect until reconnect() is called (messages queue meanwhile). Default false. */
  startClosed?: boolean;
  /**
   * Positions to resume from, such as a `client.positions` saved in localStorage: the
   * first `subscribe(topic)` sends the topic's position and the server replays what
   * was published since. Malformed entries are skipped. Default null.
   */
  positions?: Positions | null;
  /** WebSocket implementation. Default globalThis.WebSocket. */
  WebSocket?: typeof WebSocket | null;
}

export declare const DEFAULT_OPTIONS: Readonly<Required<TempestWSOptions>>;

export type ClosePolicy = "stop" | "auth" | "long" | "reconnect";

/**
 * When `token` expires, in ms since the epoch: a JWT's `exp` claim, read from its
 * base64url JSON payload without verifying anything. null for an opaque token, a JWT
 * without an `exp` that is a number or a string of digits, or anything that does not decode.
 */
export declare function tokenExpiry(token: unknown): number | null;

/**
 * The delay (ms) before refreshing a token that expires in `left` ms:
 * `left - min(margin, left / 2)`; null when `left <= 0` (already expired).
 */
export declare function refreshDelay(left: number, margin?: number): number | null;

/** What the client does after a close with `code`. */
export declare function closePolicy(code: number, userInitiated?: boolean): ClosePolicy;

/**
 * The delay (ms) before reconnect attempt `attempt` (0-based): uniform in
 * [floor, min(cap, floor * reconnectionDelayGrowFactor ** (attempt + 1))].
 */
export declare function reconnectDelay(
  attempt: number,
  kind?: "reconnect" | "auth" | "long",
  options?: TempestWSOptions,
  random?: () => number,
): number;

export type TempestWSErrorCode =
  | "auth_failed"
  | "max_retries"
  | "closed_by_server"
  | "token_provider_failed"
  | "connect_failed"
  | "timeout"
  | "disconnected"
  | "closed"
  | "aborted"
  | "queue_full"
  | "unsubscribed"
  | "not_open"
  | "no_token_provider"
  | "invalid_reply"
  /** Server codes of the built-in operations (see docs/realtime.md). */
  | "forbidden"
  | "not_subscribed"
  | "presence_disabled"
  | "unavailable"
  | "invalid_data"
  | "invalid_refresh"
  | string;

export declare class TempestWSError extends Error {
  constructor(
    message: string,
    info?: { code?: string; closeCode?: number; envelope?: Envelope; cause?: unknown },
  );
  readonly name: "TempestWSError";
  /** Machine-readable: a TempestWSErrorCode, or the server's error code for a request. */
  code: TempestWSErrorCode;
  /** The close code involved, if any. */
  closeCode?: number;
  /** The server's error envelope, for a rejected request(). */
  envelope?: Envelope;
}

export interface OpenDetail {
  connectionId: string | null;
  hello: Hello;
  /** False for the first connection of this client, true afterwards. */
  reconnected: boolean;
}
export interface CloseDetail {
  code: number;
  reason: string;
  wasClean: boolean;
  willReconnect: boolean;
}
export interface ReconnectingDetail {
  attempt: number;
  delay: number;
  code: number;
  reason: string;
}
export interface ErrorDetail {
  error: TempestWSError;
  /** True when the client stopped (call reconnect() to start again). */
  fatal: boolean;
}
/**
 * The server's answer to a `subscribe` on a topic with history (after the replayed
 * messages), or its notice that the topic's messages were interrupted.
 */
export interface RecoveryDetail {
  topic: string;
  /**
   * True: every message after the position sent with the subscribe was replayed (as
   * `message` events, before this one). False: reload the topic's state from your source
   * of truth, then continue from `offset`/`epoch`; a first subscribe, without a
   * position, is answered false too.
   */
  recovered: boolean;
  /** How many messages were replayed. */
  replayed: number;
  /** The topic's position now; the client continues from it. */
  offset: number;
  epoch: string;
}
export interface TokenRefreshDetail {
  /** The new token's expiry (ms since the epoch), or null for a token without `exp`. */
  expiresAt: number | null;
}
export interface SubscribeErrorDetail {
  /** The refused topic; the client has forgotten it (and its position). */
  topic: string;
  /** Its `code` is the server's ("forbidden" from a topic authorizer); `envelope` the answer. */
  error: TempestWSError;
}
export type WarningDetail =
  | { kind: "queue-overflow"; dropped: string; limit: number }
  | { kind: "queue-discarded"; count: number }
  | { kind: "invalid-frame"; message: string }
  /** A refresh brought no later expiry: no further proactive refresh on this connection. */
  | { kind: "token-not-renewed"; expiresAt: number };

/** `data` of the built-in operations' `ack`. */
export interface AckData {
  /** The operation acknowledged: "subscribe", "typing", "receipt", ... */
  type: string;
  topic?: string;
  [key: string]: unknown;
}

export interface RequestOptions {
  /** ms; default the requestTimeout option (0 or Infinity: none). */
  timeout?: number;
  signal?: AbortSignal;
}

export interface TempestWSEventMap {
  open: CustomEvent<OpenDetail>;
  message: CustomEvent<Envelope>;
  resync: CustomEvent<Envelope>;
  recovery: CustomEvent<RecoveryDetail>;
  /** The server accepted a refreshed token on the open connection. */
  tokenrefresh: CustomEvent<TokenRefreshDetail>;
  /** The server refused a subscription, awaited or not (also a resubscribe after a reconnect). */
  subscribeerror: CustomEvent<SubscribeErrorDetail>;
  close: CustomEvent<CloseDetail>;
  reconnecting: CustomEvent<ReconnectingDetail>;
  error: CustomEvent<ErrorDetail>;
  warning: CustomEvent<WarningDetail>;
}

export declare class TempestWS extends EventTarget {
  /**
   * @param url ws(s)://, http(s):// or a path such as "/ws"; or a function returning one,
   *   called before every connect.
   */
  constructor(url: string | URL | (() => string | URL | Promise<string | URL>), options?: TempestWSOptions);

  /** 0 connecting or waiting to reconnect, 1 open (hello received), 3 closed. */
  readonly readyState: 0 | 1 | 2 | 3;
  /** The subprotocol the server selected ("bearer" when a token was sent). */
  readonly protocol: string;
  /** The server's id of the current connection, or null when not open. */
  readonly connectionId: string | null;
  /** The last hello's data, or null. */
  readonly hello: Hello | null;
  readonly retryCount: number;
  /** Messages waiting for a connection. */
  readonly queued: number;
  /** Topics restored on every reconnect. */
  readonly subscriptions: string[];
  /**
   * A copy of the last known position of each subscribed topic with history. It moves
   * after the listeners of each stamped message ran, and on each `recovery` event.
   */
  readonly positions: Positions;
  /**
   * When the open connection's token expires (ms since the epoch): its JWT `exp`, then
   * each refresh's `expires_at`. null when not open or for a token without expiry.
   */
  readonly tokenExpiresAt: number | null;

  /** Send now (true) or queue until open (false). Throws TempestWSError "queue_full"/"closed". */
  send(type: string, data?: unknown): boolean;
  send(envelope: { type: string; data?: unknown; request_id?: string | null }): boolean;
  /** Resolve with the reply envelope carrying the same request_id. */
  request<T = unknown>(type: string, data?: unknown, options?: RequestOptions): Promise<Envelope<T>>;
  /**
   * Remember `topic` and send {"type":"subscribe","data":{"topic":topic},"request_id":id}
   * now if open, else after the next hello (and again after each reconnect), with the
   * topic's `offset` and `epoch` in `data` when known.
   *
   * Settled by the server's answer to that subscribe: resolves with it (the built-in
   * `ack`, or whatever envelope your handler answers with that `request_id`); an `error`
   * answer rejects with its code ("forbidden", ...), forgets the topic and fires
   * `subscribeerror`. Also rejects with "timeout" (no answer within requestTimeout of
   * sending; the topic stays), "unsubscribed", "closed" or a fatal error's code. Safe
   * to ignore: it never causes an unhandled rejection. The answer is also a `message`
   * event. Throws a TypeError for an invalid topic.
   */
  subscribe(topic: string): Promise<Envelope<AckData>>;
  /**
   * Forget `topic` and its position; returns whether it was subscribed. A subscribe()
   * still waiting for its answer rejects with "unsubscribed".
   */
  unsubscribe(topic: string): boolean;
  /**
   * The users in `topic` (built-in `presence.get`; needs a subscription), sorted, each
   * once. Rejects with "not_subscribed", "presence_disabled", "unavailable", ... or as
   * request() does.
   */
  presence(topic: string, options?: RequestOptions): Promise<string[]>;
  /**
   * Built-in `typing`: relayed to the topic's other members (every tab of this user
   * skipped); `typing = false` when the user stopped. Resolves with the ack; rejects
   * like request() ("not_subscribed", ...). Unlike subscribe(), catch it.
   */
  typing(topic: string, typing?: boolean, options?: RequestOptions): Promise<Envelope<AckData>>;
  /**
   * Built-in `receipt`: relays `{message_id, status}` to the topic's members (not this
   * connection). `messageId`: 1-128 characters or an integer within ±2^53; `status`:
   * a lowercase word such as "read" (else "invalid_data").
   */
  receipt(
    topic: string,
    messageId: string | number,
    status: string,
    options?: RequestOptions,
  ): Promise<Envelope<AckData>>;
  /**
   * Refresh the token on the open connection now (tokenProvider with reason "refresh",
   * then an `auth.refresh` envelope). Resolves with the new expiry (ms, or null) after
   * `tokenrefresh`. Rejects with "not_open", "no_token_provider",
   * "token_provider_failed", "invalid_refresh", "timeout" or "disconnected" (a refused
   * token: the server closes 4401 and the client reconnects through the provider).
   */
  refreshToken(): Promise<number | null>;
  /** Close for good; no reconnect. */
  close(code?: number, reason?: string): void;
  /** Drop the current socket and connect again now (fresh token, reset backoff). */
  reconnect(): void;

  /** addEventListener returning a function that removes the listener. */
  on<K extends keyof TempestWSEventMap>(type: K, listener: (event: TempestWSEventMap[K]) => void): () => void;

  addEventListener<K extends keyof TempestWSEventMap>(
    type: K,
    listener: (event: TempestWSEventMap[K]) => void,
    options?: boolean | AddEventListenerOptions,
  ): void;
  addEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | AddEventListenerOptions,
  ): void;
  removeEventListener<K extends keyof TempestWSEventMap>(
    type: K,
    listener: (event: TempestWSEventMap[K]) => void,
    options?: boolean | EventListenerOptions,
  ): void;
  removeEventListener(
    type: string,
    listener: EventListenerOrEventListenerObject | null,
    options?: boolean | EventListenerOptions,
  ): void;
}

export default TempestWS;
