"""What the hub's history keeps per topic and per joining connection (no logic).

:class:`Item` is one message of a history topic on its way to local connections,
:class:`TopicState` this node following one topic, :class:`Catchup` one connection
joining one topic. The logic lives in :mod:`tempest_ws._history_hub` (publishing,
receiving, local delivery), :mod:`tempest_ws._history_catchup` (subscribing with a
position) and :mod:`tempest_ws._history_mend` (the gap task).
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from .connection import WebSocketConnection
from .history.base import Position
from .history.seam import Seam, Sequencer

__all__ = ["NO_EXCLUSIONS", "UNKNOWN", "Catchup", "Item", "TopicState", "follows"]

NO_EXCLUSIONS: frozenset[str] = frozenset()
UNKNOWN = Position(0, "")
"""No position known: every live message is newer (a seam finished at it lets all pass)."""


class Item(NamedTuple):
    """One message of a history topic on its way to local connections."""

    position: Position
    frame: str
    exclude: frozenset[str]
    exclude_users: frozenset[str]


class Catchup:
    """One connection joining one topic: its seam, and the discontinuities of the live
    stream seen while it replays (each notice goes out before the message it precedes)."""

    __slots__ = ("breaks", "connection", "finished", "seam", "topic")

    def __init__(self, connection: WebSocketConnection, topic: TopicState, max_buffer: int) -> None:
        self.connection = connection
        self.topic = topic
        self.seam: Seam[Item] = Seam(max_buffer=max_buffer)
        self.breaks: set[Position] = set()
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class TopicState:
    """This node following one history topic (while it has local subscribers)."""

    __slots__ = (
        "catchups",
        "early",
        "failures",
        "following",
        "gap",
        "last",
        "name",
        "ready",
        "seq",
        "suspect",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.seq: Sequencer[Item] | None = None
        self.last: Position | None = None  # the last position released here
        self.following = False  # the start is known (or known to be unknown)
        self.early: list[Item] = []  # arrived before the start was known
        self.ready: asyncio.Task[None] | None = None
        self.catchups: dict[str, Catchup] = {}
        self.gap: tuple[int, float] | None = None  # (first missing offset, seen at)
        self.failures = 0
        self.suspect: str | None = None  # an epoch the sequencer dropped as stale


def follows(last: Position, position: Position) -> bool:
    """Whether ``position`` directly follows ``last`` (same epoch, next offset)."""
    return position.epoch == last.epoch and position.offset == last.offset + 1
