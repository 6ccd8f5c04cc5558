"""Stable import path ``tempest_ws.codes``: the names of `tempest_ws.wire.codes`."""

from __future__ import annotations

from tempest_ws.wire.codes import (
    CLOSE_CODE_INFO,
    CloseCode,
    CloseCodeInfo,
    describe_close_code,
)

__all__ = [
    "CLOSE_CODE_INFO",
    "CloseCode",
    "CloseCodeInfo",
    "describe_close_code",
]
