"""Every WebSocket close code tempest_ws sends, with what it means and what a client should do.

This module is the only place where close-code numbers appear. The table in
``docs/close-codes.md`` is checked against `CLOSE_CODE_INFO` by a test, so the docs
and the enum cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = ["CLOSE_CODE_INFO", "CloseCode", "CloseCodeInfo", "describe_close_code"]


class CloseCode(IntEnum):
    """Close codes sent by the router, the hub and the clients.

    Codes 1000-1015 are defined by RFC 6455; 4000-4999 are reserved for applications and
    tempest_ws mirrors HTTP status numbers there (4401 ~ 401 Unauthorized, and so on).
    """

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS = 1005
    ABNORMAL = 1006
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    UNAUTHORIZED = 4401
    FORBIDDEN = 4403
    HEARTBEAT_TIMEOUT = 4408
    TOO_MANY_CONNECTIONS = 4429
    RATE_LIMITED = 4429  # an alias: the same code, closed with the reason "rate_limited"


@dataclass(frozen=True, slots=True)
class CloseCodeInfo:
    """What a close code means (``meaning``) and what a client should do (``client_action``)."""

    meaning: str
    client_action: str
    reconnect: bool


CLOSE_CODE_INFO: dict[CloseCode, CloseCodeInfo] = {
    CloseCode.NORMAL: CloseCodeInfo(
        "Normal closure: the handler returned or either side closed cleanly.",
        "Stop if you closed it; otherwise reconnect with backoff.",
        reconnect=False,
    ),
    CloseCode.GOING_AWAY: CloseCodeInfo(
        "The server is shutting down or the page is navigating away.",
        "Reconnect with backoff (another worker will take the connection).",
        reconnect=True,
    ),
    CloseCode.PROTOCOL_ERROR: CloseCodeInfo(
        "The peer broke the WebSocket protocol (sent by the server's WebSocket layer, "
        "e.g. an unmasked or malformed frame).",
        "Fix the client; do not reconnect in a loop.",
        reconnect=False,
    ),
    CloseCode.UNSUPPORTED_DATA: CloseCodeInfo(
        "The peer does not accept this frame type (never sent by tempest_ws, whose "
        "text-only endpoints answer binary frames with an error envelope; observed from "
        "other servers).",
        "Fix the client: send JSON text frames.",
        reconnect=False,
    ),
    CloseCode.NO_STATUS: CloseCodeInfo(
        "The peer closed without a status code (never sent, only observed).",
        "Reconnect with backoff.",
        reconnect=True,
    ),
    CloseCode.ABNORMAL: CloseCodeInfo(
        "The TCP connection dropped without a close frame (never sent, only observed).",
        "Reconnect with backoff.",
        reconnect=True,
    ),
    CloseCode.INVALID_PAYLOAD: CloseCodeInfo(
        "A text frame was not valid UTF-8 (sent by the server's WebSocket layer).",
        "Fix the client: text frames must be valid UTF-8.",
        reconnect=False,
    ),
    CloseCode.POLICY_VIOLATION: CloseCodeInfo(
        "Repeated malformed or forbidden messages.",
        "Fix the client; do not reconnect in a loop.",
        reconnect=False,
    ),
    CloseCode.MESSAGE_TOO_BIG: CloseCodeInfo(
        "An inbound frame was larger than WS_MAX_MESSAGE_BYTES, or a message was split "
        "into more than WS_MAX_FRAGMENTS_PER_MESSAGE fragments (reason too many fragments).",
        "Send smaller messages; reconnecting with the same payload fails again.",
        reconnect=True,
    ),
    CloseCode.INTERNAL_ERROR: CloseCodeInfo(
        "The handler raised an unexpected exception (logged with the connection id).",
        "Reconnect with backoff.",
        reconnect=True,
    ),
    CloseCode.SERVICE_RESTART: CloseCodeInfo(
        "The server is restarting.",
        "Reconnect with backoff.",
        reconnect=True,
    ),
    CloseCode.TRY_AGAIN_LATER: CloseCodeInfo(
        "Server at capacity (WS_MAX_CONNECTIONS) or this client read too slowly: its send "
        "queue passed WS_SEND_QUEUE_BYTES or WS_SEND_QUEUE_SIZE, or did not move for "
        "WS_SLOW_CONSUMER_TIMEOUT_SECONDS.",
        "Reconnect after a long backoff.",
        reconnect=True,
    ),
    CloseCode.UNAUTHORIZED: CloseCodeInfo(
        "Missing, malformed, expired or rejected token (or the user was revoked).",
        "Get a fresh token, then reconnect; give up after a few consecutive 4401s.",
        reconnect=True,
    ),
    CloseCode.FORBIDDEN: CloseCodeInfo(
        "The connection was refused by the application's on-connect policy.",
        "Do not reconnect with the same credentials.",
        reconnect=False,
    ),
    CloseCode.HEARTBEAT_TIMEOUT: CloseCodeInfo(
        "No frame arrived for longer than WS_HEARTBEAT_TIMEOUT_SECONDS.",
        "Reconnect; answer every ping envelope with a pong envelope.",
        reconnect=True,
    ),
    CloseCode.TOO_MANY_CONNECTIONS: CloseCodeInfo(
        "The user opened more than WS_MAX_CONNECTIONS_PER_USER connections and this, the "
        "oldest, was evicted; or, with the reason rate_limited, the client sent more "
        "frames than WS_RATE_LIMIT_MESSAGES per WS_RATE_LIMIT_WINDOW_SECONDS.",
        "Reconnect only after a long backoff (another tab holds the slot, or send less).",
        reconnect=True,
    ),
}


def describe_close_code(code: int) -> str:
    """Return a one-line description of ``code``, or ``"unknown close code N"``."""
    try:
        return CLOSE_CODE_INFO[CloseCode(code)].meaning
    except ValueError:
        return f"unknown close code {code}"
