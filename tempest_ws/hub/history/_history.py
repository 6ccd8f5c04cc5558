"""The hub's message history: stamp, sequence, replay and mend the history topics.

A part of [`WebSocketHub`][tempest_ws.hub._hub.WebSocketHub], kept apart because it is one job:
every
delivery on a topic the [`HistoryPolicy`][tempest_ws.history.HistoryPolicy] keeps goes through
here (see ``docs/history.md``, "How the hub uses the history").

- **Publishing** ([`tempest_ws.hub.history._publish`][tempest_ws.hub.history._publish]) appends the
  frame to
  the store
  (its offset), stamps the position into it, releases it locally through the topic's
  sequencer and publishes one packet whose header carries the position, so receiving
  nodes never parse the frame; with Redis for both, one script appends and publishes.
- **Receiving**: packets with a position go through the topic's `Sequencer`, one
  per topic this node has local subscribers of. It starts at the store's ``latest`` once
  the node listens to the topic's channel (packets arriving before that are held, then
  pushed). Messages released out of sequence (a gap given up, a new epoch) are preceded
  by a ``recovery`` envelope with ``recovered: false`` to the topic's local subscribers.
- **One mending task per hub** (started when a gap appears, gone when none is left)
  fetches what a gap lacks from the store after ``gap_timeout``, or gives it up.
- **Subscribing with a position** replays through a seam
  ([`tempest_ws.hub.history._catchup`][tempest_ws.hub.history._catchup]); the gap task is
  [`tempest_ws.hub.history._mend`][tempest_ws.hub.history._mend].
- **Counting**: `HubHistory.stats()` reports what it did as plain numbers
  (``hub.history_stats()``); construction and the hub's public history methods are
  [`tempest_ws.hub.history._access`][tempest_ws.hub.history._access].

No lock is held and no socket awaited: deliveries append to the connections' bounded
queues, like every other fan-out of the hub.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable

from tempest_ws._bounded import STOP_TIMEOUT, bounded, cancel_tasks
from tempest_ws.backplane.packet import OP_TOPIC, Packet, topic_channel
from tempest_ws.exceptions import BackplaneError
from tempest_ws.history.base import AppendPublish, HistoryPage, HistoryStore, Position, Recovery
from tempest_ws.history.policy import HistoryPolicy
from tempest_ws.history.seam import Sequencer
from tempest_ws.history.wire import recovery_envelope
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._node import Node
from tempest_ws.hub._registry import Registry
from tempest_ws.hub.history._catchup import Catchups
from tempest_ws.hub.history._mend import Mending
from tempest_ws.hub.history._publish import Publishing
from tempest_ws.hub.history._topic import HistoryStats, Item, TopicState, follows
from tempest_ws.wire.codes import CloseCode

__all__ = ["HubHistory"]

logger = logging.getLogger("tempest_ws.history")

_READY_ROUNDS = 8  # a topic re-followed while waiting: wait for the new start


class HubHistory(Publishing, Catchups, Mending):
    """The history side of one hub (see the module docstring).

    Args:
        store: where messages are appended and read back.
        policy: which topics keep history, and the recovery limit.
        registry: the hub's local connections.
        node: the hub's backplane side (publishing, channel interest).
        gap_timeout: seconds later messages wait behind a missing one before it is
            fetched from the store (or given up).
        queue_size: the connections' send queue size: a seam buffers at most that many
            live messages, and a replay sends at most half of it.
        append_publish: the store's one-round-trip append and publish for the node's
            backplane ([`joined_with()`][tempest_ws.history.RedisHistory.joined_with]), if it
            offers one; else a publish appends, then publishes.
    """

    def __init__(
        self,
        store: HistoryStore,
        policy: HistoryPolicy,
        registry: Registry,
        node: Node,
        *,
        gap_timeout: float = 1.0,
        queue_size: int = 1024,
        append_publish: AppendPublish | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.policy = policy
        self.registry = registry
        self.node = node
        self.gap_timeout = gap_timeout
        self.append_publish = append_publish
        self.queue_size = queue_size
        self.replay_limit = min(policy.recovery_limit, max(1, queue_size // 2))
        self._clock = clock
        self._topics: dict[str, TopicState] = {}
        self._gapped: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._mender: asyncio.Task[None] | None = None
        self.appended = 0
        self.append_failures = 0
        self.recovered = 0
        self.unrecovered = 0
        self.replayed = 0
        self.filled = 0
        """Messages fetched from the store to fill gaps."""
        self.notices = 0
        """Discontinuity notices (``recovered: false``) sent to a topic's subscribers."""
        self.overflowed = 0
        self._forgotten = (0, 0)  # (skipped, stale) of the sequencers of topics left

    def stats(self) -> HistoryStats:
        """The counters as a `HistoryStats` (no I/O; one step per followed topic)."""
        skipped, stale = self._forgotten
        for state in self._topics.values():
            if state.seq is not None:
                skipped += state.seq.skipped
                stale += state.seq.stale
        return HistoryStats(
            topics_followed=len(self._topics),
            appends=self.appended,
            append_failures=self.append_failures,
            replays_recovered=self.recovered,
            replays_unrecovered=self.unrecovered,
            messages_replayed=self.replayed,
            gap_messages_filled=self.filled,
            gap_messages_skipped=skipped,
            discontinuity_notices=self.notices,
            stale_messages_dropped=stale,
            seams_overflowed=self.overflowed,
        )

    def _forget(self, state: TopicState) -> None:
        """Keep the counts of a topic's sequencer this node stops following."""
        if state.seq is not None:
            skipped, stale = self._forgotten
            self._forgotten = (skipped + state.seq.skipped, stale + state.seq.stale)

    def keeps(self, topic: str) -> bool:
        """Whether ``topic`` keeps history."""
        return self.policy.keeps(topic)

    async def stop(self, limit: float = STOP_TIMEOUT) -> None:
        """Cancel and await the mending and following tasks, forget every topic, close
        the store. The tasks and the store's ``aclose`` get ``limit`` seconds each; past
        that they are abandoned (logged on ``tempest_ws.shutdown``)."""
        tasks = [*self._tasks, self._mender]
        await cancel_tasks(tasks, "history task", limit=limit)
        self._mender = None
        for state in self._topics.values():
            self._forget(state)
            for catchup in state.catchups.values():
                if not catchup.finished.done():
                    catchup.finished.set_result(None)
        self._topics.clear()
        self._gapped.clear()
        name = type(self.store).__name__
        try:
            await bounded(self.store.aclose(), f"{name}.aclose", limit=limit)
        except Exception:  # a collaborator's failure must not break the hub's stop
            logger.exception("history store %s failed to close", name)

    async def page(self, topic: str, *, since: int | None, limit: int) -> HistoryPage:
        """``store.history`` for a topic that keeps history.

        Raises:
            ValueError: the topic keeps no history, or an argument is out of range.
            BackplaneError: the store is unreachable.
        """
        if not self.keeps(topic):
            raise ValueError(f"topic {topic[:64]!r} keeps no history")
        return await self.store.history(topic, since=since, limit=limit)

    # -- receiving ---------------------------------------------------------------------

    def on_packet(self, packet: Packet) -> int:
        """A packet of another node carrying a position (``Node.sequenced``); return how
        many local connections got its message now (0 while it is held behind a gap)."""
        if packet.position is None or packet.frame is None:
            return 0
        return self._arrive(
            packet.target,
            Position(*packet.position),
            packet.frame,
            packet.exclude,
            packet.exclude_users,
        )

    def _arrive(
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
        registry = self.registry
        if state is None:  # no local subscriber (or not a history topic here)
            return registry.fan_out(registry.select(OP_TOPIC, topic, exclude, exclude_users), frame)
        seq = state.seq
        if seq is not None and not state.catchups and seq.next_in_line(position):
            # The common case, done as _push, _watch and _release would: the next
            # message, nothing held behind a gap, nobody replaying.
            state.gap = None
            state.failures = 0
            if state.suspect is None:
                self._gapped.discard(topic)
            last = state.last
            if last is not None and (
                last.offset + 1 != position.offset or last.epoch != position.epoch
            ):  # as follows(last, position), inlined on the hot path
                self._notice(state, position)
            state.last = position
            return registry.fan_out(registry.select(OP_TOPIC, topic, exclude, exclude_users), frame)
        item = Item(position, frame, exclude, exclude_users)
        return self._release(state, self._push(state, item), item)

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
            state.suspect = item.position.epoch
            self._gapped.add(state.name)
            self._wake()
        self._watch(state)
        return released

    # -- local delivery ----------------------------------------------------------------

    def _release(self, state: TopicState, items: Iterable[Item], mine: Item | None = None) -> int:
        count = 0
        for item in items:
            last = state.last
            if last is not None and not follows(last, item.position):
                self._notice(state, item.position)
            state.last = item.position
            delivered = self._deliver(state, item)
            if item is mine:
                count = delivered
        if state.catchups and state.last is not None:
            last = state.last
            for cid, catchup in list(state.catchups.items()):
                if catchup.seam.settled(last):
                    del state.catchups[cid]
        return count

    def _deliver(self, state: TopicState, item: Item) -> int:
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

    def _notice(self, state: TopicState, position: Position) -> None:
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

    # -- following a topic -------------------------------------------------------------

    def follow(self, topic: str) -> None:
        """A local subscriber appeared: follow ``topic`` (idempotent, without waiting)."""
        if topic in self._topics:
            return
        state = self._topics[topic] = TopicState(topic)
        task = asyncio.get_running_loop().create_task(
            self._follow(state), name=f"tempest_ws history follow {topic[:64]}"
        )
        state.ready = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, state: TopicState) -> None:
        start: Position | None = None
        try:
            await self.node.want(topic_channel(state.name))
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
            self._release(state, self._push(state, item))

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
            self._forget(state)
            self._gapped.discard(topic)
            for other in state.catchups.values():
                if not other.finished.done():
                    other.finished.set_result(None)
