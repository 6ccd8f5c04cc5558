"""Stable import path ``tempest_ws.envelope``: the names of `tempest_ws.wire.envelope`."""

from __future__ import annotations

from tempest_ws.wire.envelope import (
    ACK,
    AUTH_REFRESH,
    ERROR,
    HELLO,
    PING,
    PING_FRAME,
    PONG,
    RECOVERY,
    RESERVED_TYPES,
    RESYNC,
    SUBSCRIBE,
    UNSUBSCRIBE,
    EnvelopeLike,
    WSEnvelope,
    decode_envelope,
    decode_frame,
    encode_envelope,
    error_envelope,
    json_depth_exceeds,
    parse_json,
)

__all__ = [
    "ACK",
    "AUTH_REFRESH",
    "ERROR",
    "HELLO",
    "PING",
    "PING_FRAME",
    "PONG",
    "RECOVERY",
    "RESERVED_TYPES",
    "RESYNC",
    "SUBSCRIBE",
    "UNSUBSCRIBE",
    "EnvelopeLike",
    "WSEnvelope",
    "decode_envelope",
    "decode_frame",
    "encode_envelope",
    "error_envelope",
    "json_depth_exceeds",
    "parse_json",
]
