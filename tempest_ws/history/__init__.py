"""Message history and recovery: offsets, epochs, bounded per-topic history.

``MemoryHistory`` serves one process; ``RedisHistory`` (Redis Streams) is shared by every
node, so a client can resume on any node. ``RedisHistory`` is imported on first use, so
``import tempest_ws.history`` never imports redis. ``Seam`` and ``Sequencer`` are the
pure ordering logic the hub drives; ``stamp_frame`` and friends are the wire format.
See ``docs/history.md`` for what is guaranteed, and what is not integrated yet.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tempest_ws.history.base import (
    AppendPublish,
    Entry,
    HistoryPage,
    HistoryStore,
    Position,
    Recovery,
    new_epoch,
)
from tempest_ws.history.memory import MemoryHistory
from tempest_ws.history.policy import HistoryPolicy
from tempest_ws.history.seam import Seam, Sequencer
from tempest_ws.history.wire import (
    RECOVERY,
    StampedEnvelope,
    position_of,
    recovery_envelope,
    requested_position,
    stamp_frame,
)

if TYPE_CHECKING:
    from tempest_ws.history.redis import RedisHistory

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
        from tempest_ws.history.redis import RedisHistory

        return RedisHistory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
