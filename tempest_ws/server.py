"""Stable import path ``tempest_ws.server``: the names of `tempest_ws.router.server`."""

from __future__ import annotations

from tempest_ws.router.server import (
    run,
    uvicorn_options,
)

__all__ = [
    "run",
    "uvicorn_options",
]
