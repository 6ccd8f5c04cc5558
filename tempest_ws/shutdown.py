"""Stable import path ``tempest_ws.shutdown``: the names of `tempest_ws.router.shutdown`."""

from __future__ import annotations

from tempest_ws.router.shutdown import (
    DRAIN_REASON,
    Drainable,
    DrainingServer,
    drain,
    run,
)

__all__ = [
    "DRAIN_REASON",
    "Drainable",
    "DrainingServer",
    "drain",
    "run",
]
