"""What the hub's history keeps per topic and per joining connection (no logic).

`Item` is one message of a history topic on its way to local connections,
`TopicState` this node following one topic, `Catchup` one connection
joining one topic, `HistoryStats` the counters the hub reports. The logic lives in the
collaborators of [`HubHistory`][tempest_ws.hub.history._history.HubHistory]: the
sequencers ([`tempest_ws.hub.history._sequence`][tempest_ws.hub.history._sequence]), the
local delivery ([`tempest_ws.hub.history._release`][tempest_ws.hub.history._release]),
the replays ([`tempest_ws.hub.history._catchup`][tempest_ws.hub.history._catchup]), the
gap task ([`tempest_ws.hub.history._mend`][tempest_ws.hub.history._mend]) and the
publishing ([`tempest_ws.hub.history._publish`][tempest_ws.hub.history._publish]).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import NamedTuple

from tempest_ws.backplane.packet import topic_channel
from tempest_ws.history.base import Position
from tempest_ws.history.seam import Seam, Sequencer
from tempest_ws.history.wire import Stamper
from tempest_ws.hub._connection import WebSocketConnection

__all__ = [
    "NO_EXCLUSIONS",
    "UNKNOWN",
    "Catchup",
    "HistoryStats",
    "Item",
    "TopicState",
    "follows",
]

NO_EXCLUSIONS: frozenset[str] = frozenset()
UNKNOWN = Position(0, "")
"""No position known: every live message is newer (a seam finished at it lets all pass)."""


@dataclass(frozen=True, slots=True)
class HistoryStats:
    """A snapshot of the hub's message history (this process only; all zero on a hub
    that keeps no history). Every field but ``topics_followed`` counts since the hub
    was created; none is per topic.

    Attributes:
        topics_followed: history topics this node follows now (those with a local
            subscriber).
        appends: messages appended to the store (each got its offset).
        append_failures: appends the store refused; the message went out unstamped.
        replays_recovered: subscribes with a position answered ``recovered: true``.
        replays_unrecovered: subscribes with a position answered ``recovered: false``
            (too far behind, another epoch, or the store unreachable).
        messages_replayed: messages sent in those replays (one per connection).
        gap_messages_filled: messages fetched from the store to fill a gap in the live
            stream.
        gap_messages_skipped: offsets given up for good (the store no longer had them,
            or stayed unreachable).
        discontinuity_notices: ``recovered: false`` notices sent to a topic's
            subscribers for a skip in the live stream (one per topic and skip here).
        stale_messages_dropped: live messages dropped as from an older epoch.
        seams_overflowed: connections closed 1013 because their live messages
            overflowed the buffer while their replay was read.
    """

    topics_followed: int = 0
    appends: int = 0
    append_failures: int = 0
    replays_recovered: int = 0
    replays_unrecovered: int = 0
    messages_replayed: int = 0
    gap_messages_filled: int = 0
    gap_messages_skipped: int = 0
    discontinuity_notices: int = 0
    stale_messages_dropped: int = 0
    seams_overflowed: int = 0


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
        "channel",
        "early",
        "failures",
        "following",
        "gap",
        "head",
        "last",
        "name",
        "ready",
        "seq",
        "stamp",
        "suspect",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.channel = topic_channel(name)
        self.seq: Sequencer[Item] | None = None
        self.last: Position | None = None  # the last position released here
        self.following = False  # the start is known (or known to be unknown)
        self.early: list[Item] = []  # arrived before the start was known
        self.ready: asyncio.Task[None] | None = None
        self.catchups: dict[str, Catchup] = {}
        self.gap: tuple[int, float] | None = None  # (first missing offset, seen at)
        self.failures = 0
        self.suspect: str | None = None  # an epoch the sequencer dropped as stale
        self.stamp = Stamper(name)
        self.head = ""  # this node's positioned packet header without exclusions, once made


def follows(last: Position, position: Position) -> bool:
    """Whether ``position`` directly follows ``last`` (same epoch, next offset)."""
    return position.epoch == last.epoch and position.offset == last.offset + 1
