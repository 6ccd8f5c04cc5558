// Type declarations for tempest-ws.js, the browser client of tempest_ws.

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
  /** "connect" (first), "reconnect", or "unauthorized" (the last close was 4401). */
  reason: "connect" | "reconnect" | "unauthorized";
  /** Reconnect attempts so far (0 for the first connect). */
  attempt: number;
  /** Code of the last close, or null. */
  closeCode: number | null;
}

export interface TempestWSOptions {
  /** A fixed token, sent as the subprotocols ["bearer", token]. */
  token?: string | null;
  /** Called before every connect and reconnect; its token is sent as ["bearer", token]. */
  tokenProvider?: ((request: TokenRequest) => string | null | Promise<string | null>) | null;
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
export type WarningDetail =
  | { kind: "queue-overflow"; dropped: string; limit: number }
  | { kind: "queue-discarded"; count: number }
  | { kind: "invalid-frame"; message: string };

export interface TempestWSEventMap {
  open: CustomEvent<OpenDetail>;
  message: CustomEvent<Envelope>;
  resync: CustomEvent<Envelope>;
  recovery: CustomEvent<RecoveryDetail>;
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

  /** Send now (true) or queue until open (false). Throws TempestWSError "queue_full"/"closed". */
  send(type: string, data?: unknown): boolean;
  send(envelope: { type: string; data?: unknown; request_id?: string | null }): boolean;
  /** Resolve with the reply envelope carrying the same request_id. */
  request<T = unknown>(
    type: string,
    data?: unknown,
    options?: { timeout?: number; signal?: AbortSignal },
  ): Promise<Envelope<T>>;
  /**
   * Remember `topic` and send {"type":"subscribe","data":{"topic":topic}} (again after
   * each reconnect), with the topic's `offset` and `epoch` in `data` when known.
   */
  subscribe(topic: string): void;
  /** Forget `topic` and its position; returns whether it was subscribed. */
  unsubscribe(topic: string): boolean;
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
