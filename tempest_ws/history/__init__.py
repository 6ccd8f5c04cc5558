"""Message history and recovery: offsets, epochs, bounded per-topic history.

``MemoryHistory`` serves one process; ``RedisHistory`` (Redis Streams) is shared by every
node, so a client can resume on any node. ``RedisHistory`` is imported on first use, so
``import tempest_ws.history`` never imports redis. ``Seam`` and ``Sequencer`` are the
pure ordering logic the hub drives; ``stamp_frame`` and friends are the wire format.
See ``docs/history.md`` for what is guaranteed, and what is not integrated yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import AppendPublish, Entry, HistoryPage, HistoryStore, Position, Recovery, new_epoch
from .memory import MemoryHistory
from .policy import HistoryPolicy
from .seam import Seam, Sequencer
from .wire import (
    RECOVERY,
    StampedEnvelope,
    position_of,
    recovery_envelope,
    requested_position,
    stamp_frame,
)

if TYPE_CHECKING:
    from .redis import RedisHistory

__all__ = [
    "RECOVERY",
    "AppendPublish",
    "Entry",
    "HistoryPage",
    "HistoryPolicy",
    "HistoryStore",
    "MemoryHistory",
    "Position",
    "Recovery",
    "RedisHistory",
    "Seam",
    "Sequencer",
    "StampedEnvelope",
    "new_epoch",
    "position_of",
    "recovery_envelope",
    "requested_position",
    "stamp_frame",
]


def __getattr__(name: str) -> Any:
    if name == "RedisHistory":
        from .redis import RedisHistory

        return RedisHistory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
