"""Receiving a history topic's messages in offset order, and following its topics.

Packets with a position go through the topic's `Sequencer`, one per topic this node has
local subscribers of. It starts at the store's ``latest`` once the node listens to the
topic's channel (packets arriving before that are held, then pushed). A message behind
a missing one waits for the gap task ([`Mender`][tempest_ws.hub.history._mend.Mender]);
what the sequencer releases is delivered by
[`Release`][tempest_ws.hub.history._release.Release].
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tempest_ws.backplane.packet import OP_TOPIC, Packet, topic_channel
from tempest_ws.exceptions import BackplaneError
from tempest_ws.history.base import HistoryStore, Position
from tempest_ws.history.seam import Sequencer
from tempest_ws.hub._registry import Registry
from tempest_ws.hub.history._mend import Mender
from tempest_ws.hub.history._release import Release
from tempest_ws.hub.history._topic import Item, TopicState

__all__ = ["Sequencing"]

logger = logging.getLogger("tempest_ws.history")

_READY_ROUNDS = 8  # a topic re-followed while waiting: wait for the new start


class Sequencing:
    """The history topics this node follows and the messages arriving on them.

    Args:
        store: where a topic's start (``latest``) is read when following begins.
        topics: the followed topics by name, shared with the gap task and the replays.
        registry: the hub's local connections (topics without local subscribers).
        want: the node's ``want(channel)``: receive a channel, confirmed.
        release: local delivery of what the sequencers release.
        mender: the gap task, told when a sequencer holds or drops messages.
    """

    def __init__(
        self,
        store: HistoryStore,
        topics: dict[str, TopicState],
        registry: Registry,
        want: Callable[[str], Awaitable[None]],
        release: Release,
        mender: Mender,
    ) -> None:
        self.store = store
        self.tasks: set[asyncio.Task[None]] = set()
        """The tasks starting to follow a topic."""
        self._topics = topics
        self._registry = registry
        self._want = want
        self._release = release
        self._mender = mender
        self._forgotten = (0, 0)  # (skipped, stale) of the sequencers of topics left

    def counts(self) -> tuple[int, int]:
        """Messages given up (skipped) and dropped as stale, by every sequencer so far."""
        skipped, stale = self._forgotten
        for state in self._topics.values():
            if state.seq is not None:
                skipped += state.seq.skipped
                stale += state.seq.stale
        return skipped, stale

    def forget(self, state: TopicState) -> None:
        """Keep the counts of a topic's sequencer this node stops following."""
        if state.seq is not None:
            skipped, stale = self._forgotten
            self._forgotten = (skipped + state.seq.skipped, stale + state.seq.stale)

    # -- receiving ---------------------------------------------------------------------

    def on_packet(self, packet: Packet) -> int:
        """A packet of another node carrying a position; return how many local
        connections got its message now (0 while it is held behind a gap)."""
        if packet.position is None or packet.frame is None:
            return 0
        return self.arrive(
            packet.target,
            Position(*packet.position),
            packet.frame,
            packet.exclude,
            packet.exclude_users,
        )

    def arrive(
        self,
        topic: str,
        position: Position,
        frame: str,
        exclude: frozenset[str],
        exclude_users: frozenset[str],
    ) -> int:
        """Push a message through the topic's sequencer and deliver what it releases;
        return how many local connections got this message now."""
        state = self._topics.get(topic)
        if state is None:  # no local subscriber (or not a history topic here)
            registry = self._registry
            return registry.fan_out(registry.select(OP_TOPIC, topic, exclude, exclude_users), frame)
        return self.arrive_at(state, position, frame, exclude, exclude_users)

    def arrive_at(
        self,
        state: TopicState,
        position: Position,
        frame: str,
        exclude: frozenset[str],
        exclude_users: frozenset[str],
    ) -> int:
        """`arrive()` on a topic this node follows (``state``, looked up by the caller)."""
        seq = state.seq
        if seq is not None and not state.catchups and seq.next_in_line(position):
            # The common case, done as push, Mender.watch and Release.release would: the
            # next message, nothing held behind a gap, nobody replaying.
            if state.gap is not None or state.failures:
                state.gap = None
                state.failures = 0
            gapped = self._mender.gapped
            if gapped and state.suspect is None:
                gapped.discard(state.name)
            last = state.last
            if last is not None:  # as follows(last, position), inlined on the hot path
                offset, epoch = last
                if offset + 1 != position[0] or epoch != position[1]:
                    self._release.notice(state, position)
            state.last = position
            registry = self._registry
            recipients = registry.select(OP_TOPIC, state.name, exclude, exclude_users)
            return registry.fan_out(recipients, frame)
        item = Item(position, frame, exclude, exclude_users)
        return self._release.release(state, self._push(state, item), item)

    def _push(self, state: TopicState, item: Item) -> list[Item]:
        seq = state.seq
        if seq is None:
            if not state.following:
                state.early.append(item)
                return []
            # The store was unreachable when following began: start from this message.
            seq = state.seq = Sequencer(Position(item.position.offset - 1, item.position.epoch))
            state.last = seq.position
        stale = seq.stale
        released = seq.push(item.position, item)
        if seq.stale != stale:
            self._mender.suspect(state, item.position.epoch)
        self._mender.watch(state)
        return released

    # -- following a topic -------------------------------------------------------------

    def follow(self, topic: str) -> TopicState:
        """A local subscriber appeared: follow ``topic`` (idempotent, without waiting)."""
        state = self._topics.get(topic)
        if state is not None:
            return state
        state = self._topics[topic] = TopicState(topic)
        task = asyncio.get_running_loop().create_task(
            self._follow(state), name=f"tempest_ws history follow {topic[:64]}"
        )
        state.ready = task
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return state

    async def _follow(self, state: TopicState) -> None:
        start: Position | None = None
        try:
            await self._want(topic_channel(state.name))
            start = await self.store.latest(state.name)
        except BackplaneError as exc:
            logger.warning(
                "history of topic %s unreachable (%s); following it from its next message",
                state.name,
                exc,
            )
        if self._topics.get(state.name) is not state:
            return  # the last subscriber left meanwhile
        if start is not None:
            state.seq = Sequencer(start)
            state.last = start
        state.following = True
        early, state.early = state.early, []
        for item in early:
            self._release.release(state, self._push(state, item))

    async def ready(self, topic: str) -> None:
        """Wait until this node follows ``topic`` (its channel confirmed, its start read)."""
        for _ in range(_READY_ROUNDS):
            state = self._topics.get(topic)
            if state is None or state.ready is None or state.following:
                return
            await asyncio.shield(state.ready)

    def left(self, topic: str, connection_id: str, *, last: bool) -> None:
        """A connection left ``topic``; ``last``: no local subscriber remains."""
        state = self._topics.get(topic)
        if state is None:
            return
        catchup = state.catchups.pop(connection_id, None)
        if catchup is not None and not catchup.finished.done():
            catchup.finished.set_result(None)
        if last:
            del self._topics[topic]
            self.forget(state)
            self._mender.gapped.discard(topic)
            for other in state.catchups.values():
                if not other.finished.done():
                    other.finished.set_result(None)
