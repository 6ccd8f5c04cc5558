"""Stable import path ``tempest_ws.metrics``: the names of `tempest_ws.observe.metrics`."""

from __future__ import annotations

from tempest_ws.observe.metrics import (
    ALLOWED_LABELS,
    REJECTION_REASONS,
    WebSocketMetrics,
    add_metrics_route,
    hub_snapshot,
    multiprocess_mode,
)

__all__ = [
    "ALLOWED_LABELS",
    "REJECTION_REASONS",
    "WebSocketMetrics",
    "add_metrics_route",
    "hub_snapshot",
    "multiprocess_mode",
]
