"""Subscribing with a position: the replay, the ``recovery`` envelope and the seam.

A collaborator of [`HubHistory`][tempest_ws.hub.history._history.HubHistory]. The hub
registers the subscription, then `Catchups.begin()`
installs a [`Seam`][tempest_ws.history.Seam] for the connection *before* anything is
read, so live messages that arrive during the read are buffered. `Catchups.catch_up()`
reads the store, queues the replay, the ``recovery`` envelope, then the buffered live
messages the replay did not contain; the seam stays (dropping duplicates) until the live
stream has passed the replay's end. A discontinuity of the live stream seen while the
connection replays is announced just before the message it precedes.
"""

from __future__ import annotations

import asyncio
import logging

from tempest_ws.exceptions import BackplaneError
from tempest_ws.history.base import HistoryStore, Position, Recovery
from tempest_ws.history.wire import recovery_envelope, stamp_frame
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._registry import Registry
from tempest_ws.hub.history._sequence import Sequencing
from tempest_ws.hub.history._topic import NO_EXCLUSIONS, UNKNOWN, Catchup, Item, TopicState

__all__ = ["Catchups"]

logger = logging.getLogger("tempest_ws.history")

_QUIESCE_ROUNDS = 8


class Catchups:
    """Replays for subscriptions with a position.

    Args:
        store: where the replay is read.
        registry: the hub's local connections (the replay is queued through its fan-out).
        sequencing: following topics (a replay waits until its topic is followed).
        topics: the followed topics by name, shared with the sequencing.
        queue_size: the connections' send queue size: a seam buffers at most that many
            live messages.
        replay_limit: the most messages one replay sends.
    """

    def __init__(
        self,
        store: HistoryStore,
        registry: Registry,
        sequencing: Sequencing,
        topics: dict[str, TopicState],
        *,
        queue_size: int,
        replay_limit: int,
    ) -> None:
        self.store = store
        self.queue_size = queue_size
        self.replay_limit = replay_limit
        self.recovered = 0
        self.unrecovered = 0
        self.replayed = 0
        self._registry = registry
        self._sequencing = sequencing
        self._topics = topics

    async def quiesce(self, connection_id: str, topic: str) -> None:
        """Wait until a catch-up of this connection on ``topic`` in progress ends."""
        for _ in range(_QUIESCE_ROUNDS):
            state = self._topics.get(topic)
            catchup = None if state is None else state.catchups.get(connection_id)
            if catchup is None or catchup.finished.done():
                return
            await asyncio.shield(catchup.finished)

    def begin(self, connection: WebSocketConnection, topic: str) -> Catchup:
        """Install a seam for ``connection`` on ``topic`` (subscribed already): from now
        on its live messages of the topic are buffered until `catch_up()`."""
        state = self._sequencing.follow(topic)
        catchup = Catchup(connection, state, self.queue_size)
        state.catchups[connection.connection_id] = catchup
        return catchup

    async def catch_up(
        self, catchup: Catchup, position: Position | None, request_id: str | None
    ) -> None:
        """Read what the connection missed since ``position`` (``None``: nothing, it
        starts now), queue it, the ``recovery`` envelope, then the live messages
        buffered meanwhile."""
        state = catchup.topic
        topic = state.name
        await self._sequencing.ready(topic)
        try:
            if position is None:
                recovery = Recovery((), False, await self.store.latest(topic))
            else:
                recovery = await self.store.since(
                    topic, position.offset, position.epoch, limit=self.replay_limit
                )
        except BackplaneError as exc:
            logger.warning(
                "history of topic %s unreachable for connection %s: %s",
                topic,
                catchup.connection.connection_id,
                exc,
            )
            recovery = Recovery((), False, state.last or UNKNOWN)
        if state.catchups.get(catchup.connection.connection_id) is not catchup:
            return  # it left the topic meanwhile (or closed): end() has nothing to do
        epoch = recovery.position.epoch
        replay = [
            Item(at, stamp_frame(entry.frame, topic, at), NO_EXCLUSIONS, NO_EXCLUSIONS)
            for entry in recovery.entries
            for at in (Position(entry.offset, epoch),)
        ]
        if position is not None:
            if recovery.recovered:
                self.recovered += 1
            else:
                self.unrecovered += 1
            self.replayed += len(replay)
        items = catchup.seam.finish(recovery.position, replay)
        answer = recovery_envelope(topic, recovery, replayed=len(replay), request_id=request_id)
        frames = [item.frame for item in items[: len(replay)]]
        frames.append(answer)
        frames.extend(self._with_notices(catchup, recovery.position, items[len(replay) :]))
        self._finish(catchup, frames)

    def end(self, catchup: Catchup) -> None:
        """Make sure ``catchup`` ended (the subscribe failed or was cancelled before the
        replay): what its seam buffered is delivered in order, without a replay."""
        if catchup.finished.done():
            return
        if not catchup.seam.replaying:
            catchup.finished.set_result(None)
            return
        items = catchup.seam.finish(UNKNOWN)
        state = catchup.topic
        if state.catchups.get(catchup.connection.connection_id) is not catchup:
            catchup.finished.set_result(None)
            return
        self._finish(catchup, self._with_notices(catchup, UNKNOWN, items))

    def _with_notices(self, catchup: Catchup, start: Position, items: list[Item]) -> list[str]:
        """The frames of ``items`` with a discontinuity notice before each message the
        live stream skipped to, unless the replay (up to ``start``) covered the skip."""
        breaks = catchup.breaks
        frames: list[str] = []
        for item in items:
            at = item.position
            if at in breaks:
                breaks.discard(at)
                lost = Recovery((), False, Position(at.offset - 1, at.epoch))
                frames.append(recovery_envelope(catchup.topic.name, lost, replayed=0))
            frames.append(item.frame)
        for at in sorted(breaks):
            covered = at.epoch == start.epoch and at.offset <= start.offset + 1
            if not covered and at.epoch >= start.epoch:
                lost = Recovery((), False, Position(at.offset - 1, at.epoch))
                frames.append(recovery_envelope(catchup.topic.name, lost, replayed=0))
                break
        breaks.clear()
        return frames

    def _finish(self, catchup: Catchup, frames: list[str]) -> None:
        connection = catchup.connection
        catchup.finished.set_result(None)
        for frame in frames:
            if self._registry.fan_out((connection,), frame) == 0:
                break  # closing (a full queue closed it 1013)
        state = catchup.topic
        last = state.last
        cid = connection.connection_id
        if state.catchups.get(cid) is catchup and last is not None and catchup.seam.settled(last):
            del state.catchups[cid]
