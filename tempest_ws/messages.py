"""Stable import path ``tempest_ws.messages``: the names of `tempest_ws.wire.messages`."""

from __future__ import annotations

from tempest_ws.wire.messages import (
    INVALID_DATA,
    TOPIC_LIMIT,
    UNKNOWN_TYPE,
    Direction,
    MessageRegistry,
    RegisteredMessage,
    describe_validation_error,
)

__all__ = [
    "INVALID_DATA",
    "TOPIC_LIMIT",
    "UNKNOWN_TYPE",
    "Direction",
    "MessageRegistry",
    "RegisteredMessage",
    "describe_validation_error",
]
