"""Stable import path ``tempest_ws.tracing``: the names of `tempest_ws.observe.tracing`."""

from __future__ import annotations

from tempest_ws.observe.tracing import (
    MESSAGING_SYSTEM,
    PACKET_KEY,
    Tracing,
)

__all__ = [
    "MESSAGING_SYSTEM",
    "PACKET_KEY",
    "Tracing",
]
