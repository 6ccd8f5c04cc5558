// Close codes and ready states: the numbers both ends agree on.

/** Close codes, mirrored from `tempest_ws/wire/codes.py` (a test keeps the two equal). */
export const CloseCode = Object.freeze({
  NORMAL: /** @type {1000} */ (1000),
  GOING_AWAY: /** @type {1001} */ (1001),
  PROTOCOL_ERROR: /** @type {1002} */ (1002),
  UNSUPPORTED_DATA: /** @type {1003} */ (1003),
  NO_STATUS: /** @type {1005} */ (1005),
  ABNORMAL: /** @type {1006} */ (1006),
  INVALID_PAYLOAD: /** @type {1007} */ (1007),
  POLICY_VIOLATION: /** @type {1008} */ (1008),
  MESSAGE_TOO_BIG: /** @type {1009} */ (1009),
  INTERNAL_ERROR: /** @type {1011} */ (1011),
  SERVICE_RESTART: /** @type {1012} */ (1012),
  TRY_AGAIN_LATER: /** @type {1013} */ (1013),
  UNAUTHORIZED: /** @type {4401} */ (4401),
  FORBIDDEN: /** @type {4403} */ (4403),
  HEARTBEAT_TIMEOUT: /** @type {4408} */ (4408),
  TOO_MANY_CONNECTIONS: /** @type {4429} */ (4429),
  RATE_LIMITED: /** @type {4429} */ (4429), // an alias: 4429 with the reason "rate_limited"
});

/** `readyState` values, as on `WebSocket`. */
export const ReadyState = Object.freeze({
  CONNECTING: /** @type {0} */ (0),
  OPEN: /** @type {1} */ (1),
  CLOSING: /** @type {2} */ (2),
  CLOSED: /** @type {3} */ (3),
});
