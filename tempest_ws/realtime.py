"""Stable import path ``tempest_ws.realtime``: the names of `tempest_ws.router.realtime`."""

from __future__ import annotations

from tempest_ws.router.realtime import (
    BUILTIN_OPERATIONS,
    PRESENCE_GET,
    PRESENCE_JOIN,
    PRESENCE_LEAVE,
    RECEIPT,
    SUBSCRIBE,
    TYPING,
    UNSUBSCRIBE,
    Incoming,
    OnConnect,
    OnDisconnect,
    TopicAuthorizer,
    allow_any_topic,
    error_reply,
    receive_envelope,
    reply_envelope,
)

__all__ = [
    "BUILTIN_OPERATIONS",
    "PRESENCE_GET",
    "PRESENCE_JOIN",
    "PRESENCE_LEAVE",
    "RECEIPT",
    "SUBSCRIBE",
    "TYPING",
    "UNSUBSCRIBE",
    "Incoming",
    "OnConnect",
    "OnDisconnect",
    "TopicAuthorizer",
    "allow_any_topic",
    "error_reply",
    "receive_envelope",
    "reply_envelope",
]
