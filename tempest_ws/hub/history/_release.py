"""Local delivery of a history topic's messages once its sequencer releases them.

Each released message goes to the topic's local subscribers, except those still
replaying: their seam takes it (or drops it as a duplicate of the replay), and a seam
that overflows closes its connection 1013. A message released out of sequence (a gap
given up, a new epoch) is preceded by a ``recovery`` envelope with ``recovered: false``.
No lock is held and no socket awaited: deliveries append to the connections' bounded
queues, like every other fan-out of the hub.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from tempest_ws.backplane.packet import OP_TOPIC
from tempest_ws.history.base import Position, Recovery
from tempest_ws.history.wire import recovery_envelope
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._registry import Registry
from tempest_ws.hub.history._topic import Item, TopicState, follows
from tempest_ws.wire.codes import CloseCode

__all__ = ["Release"]

logger = logging.getLogger("tempest_ws.history")


class Release:
    """Hands released messages of history topics to the local connections.

    Args:
        registry: the hub's local connections.
    """

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.notices = 0
        """Discontinuity notices (``recovered: false``) sent to a topic's subscribers."""
        self.overflowed = 0
        """Connections closed 1013 because their seam overflowed."""

    def release(self, state: TopicState, items: Iterable[Item], mine: Item | None = None) -> int:
        """Deliver ``items`` in order (a notice before any that does not follow the last
        one released); return how many connections got ``mine``."""
        count = 0
        for item in items:
            last = state.last
            if last is not None and not follows(last, item.position):
                self.notice(state, item.position)
            state.last = item.position
            delivered = self.deliver(state, item)
            if item is mine:
                count = delivered
        if state.catchups and state.last is not None:
            last = state.last
            for cid, catchup in list(state.catchups.items()):
                if catchup.seam.settled(last):
                    del state.catchups[cid]
        return count

    def deliver(self, state: TopicState, item: Item) -> int:
        """Queue one message for the topic's local subscribers (through the seams of
        those replaying); return how many got it now."""
        registry = self.registry
        recipients = registry.select(OP_TOPIC, state.name, item.exclude, item.exclude_users)
        catchups = state.catchups
        if not catchups:
            return registry.fan_out(recipients, item.frame)
        direct: list[WebSocketConnection] = []
        overflowed: list[WebSocketConnection] = []
        for connection in list(recipients):
            catchup = catchups.get(connection.connection_id)
            if catchup is None or catchup.seam.live(item.position, item):
                direct.append(connection)
            elif catchup.seam.overflowed:
                overflowed.append(connection)
        delivered = registry.fan_out(direct, item.frame)
        for connection in overflowed:  # closing mutates the registry: after the loop
            catchups.pop(connection.connection_id, None)
            if not connection.closing:
                registry.slow_closed += 1
                self.overflowed += 1
                logger.warning(
                    "connection %s is a slow consumer (replay buffer full); closing",
                    connection.connection_id,
                )
                connection.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")
        return delivered

    def notice(self, state: TopicState, position: Position) -> None:
        """The live stream skips to ``position``: tell the topic's subscribers to reload
        (connections still replaying get it when their replay reaches ``position``)."""
        self.notices += 1
        logger.warning(
            "history topic %s: messages before offset %d (epoch %s) are lost here; "
            "subscribers told to reload",
            state.name,
            position.offset,
            position.epoch,
        )
        frame = recovery_envelope(
            state.name,
            Recovery((), False, Position(position.offset - 1, position.epoch)),
            replayed=0,
        )
        direct: list[WebSocketConnection] = []
        for connection in list(self.registry.topics.get(state.name, {}).values()):
            catchup = state.catchups.get(connection.connection_id)
            if catchup is not None and catchup.seam.replaying:
                catchup.breaks.add(position)
            else:
                direct.append(connection)
        self.registry.fan_out(direct, frame)
