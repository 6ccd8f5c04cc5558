"""The hub's message history: stamp, sequence, replay and mend the history topics.

A part of :class:`~tempest_ws.hub.WebSocketHub`, kept apart because it is one job: every
delivery on a topic the :class:`~tempest_ws.history.HistoryPolicy` keeps goes through
here (see ``docs/history.md``, "How the hub uses the history").

- **Publishing** appends the frame to the store (its offset), stamps the position into
  it, releases it locally through the topic's sequencer and publishes one packet whose
  header carries the position, so receiving nodes never parse the frame.
- **Receiving**: packets with a position go through the topic's :class:`Sequencer`, one
  per topic this node has local subscribers of. It starts at the store's ``latest`` once
  the node listens to the topic's channel (packets arriving before that are held, then
  pushed). Messages released out of sequence (a gap given up, a new epoch) are preceded
  by a ``recovery`` envelope with ``recovered: false`` to the topic's local subscribers.
- **One mending task per hub** (started when a gap appears, gone when none is left)
  fetches what a gap lacks from the store after ``gap_timeout``, or gives it up.
- **Subscribing** installs a :class:`Seam` for the connection *before* reading the store,
  so live messages that arrive during the read are buffered, then joined to the replay
  without a gap or a duplicate; the seam is dropped once the live stream has passed the
  replay's end.

No lock is held and no socket awaited: deliveries append to the connections' bounded
queues, like every other fan-out of the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import NamedTuple

from ._node import Node
from ._registry import Registry
from .backplane.packet import OP_TOPIC, Packet, encode_packet, topic_channel
from .codes import CloseCode
from .connection import WebSocketConnection
from .exceptions import BackplaneError
from .history.base import HistoryPage, HistoryStore, Position, Recovery
from .history.policy import HistoryPolicy
from .history.seam import Seam, Sequencer
from .history.wire import recovery_envelope, stamp_frame

__all__ = ["Catchup", "HubHistory", "Item"]

logger = logging.getLogger("tempest_ws.history")

_NONE: frozenset[str] = frozenset()
_UNKNOWN = Position(0, "")  # no position known: every live message is newer
_MEND_ATTEMPTS = 3  # store failures before a gap is given up
_QUIESCE_ROUNDS = 8


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

    def __init__(self, connection: WebSocketConnection, topic: _Topic, max_buffer: int) -> None:
        self.connection = connection
        self.topic = topic
        self.seam: Seam[Item] = Seam(max_buffer=max_buffer)
        self.breaks: set[Position] = set()
        self.finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class _Topic:
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


def _follows(last: Position, position: Position) -> bool:
    return position.epoch == last.epoch and position.offset == last.offset + 1


class HubHistory:
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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.policy = policy
        self.registry = registry
        self.node = node
        self.gap_timeout = gap_timeout
        self.queue_size = queue_size
        self.replay_limit = min(policy.recovery_limit, max(1, queue_size // 2))
        self._clock = clock
        self._topics: dict[str, _Topic] = {}
        self._gapped: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._mender: asyncio.Task[None] | None = None
        self.filled = 0
        """Messages fetched from the store to fill gaps."""
        self.notices = 0
        """Discontinuity notices (``recovered: false``) sent to a topic's subscribers."""

    def keeps(self, topic: str) -> bool:
        """Whether ``topic`` keeps history."""
        return self.policy.keeps(topic)

    async def stop(self) -> None:
        """Cancel and await the mending and following tasks, forget every topic, close
        the store."""
        tasks = [*self._tasks, *([self._mender] if self._mender is not None else [])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._mender = None
        for state in self._topics.values():
            for catchup in state.catchups.values():
                if not catchup.finished.done():
                    catchup.finished.set_result(None)
        self._topics.clear()
        self._gapped.clear()
        await self.store.aclose()

    async def page(self, topic: str, *, since: int | None, limit: int) -> HistoryPage:
        """``store.history`` for a topic that keeps history.

        Raises:
            ValueError: the topic keeps no history, or an argument is out of range.
            BackplaneError: the store is unreachable.
        """
        if not self.keeps(topic):
            raise ValueError(f"topic {topic[:64]!r} keeps no history")
        return await self.store.history(topic, since=since, limit=limit)

    # -- publishing --------------------------------------------------------------------

    async def broadcast(
        self, topic: str, frame: str, exclude: frozenset[str], exclude_users: frozenset[str]
    ) -> int:
        """Append, stamp, deliver here in offset order, publish with the position.

        When the append fails, the unstamped frame is delivered and published as on a
        topic without history, then the append's :class:`BackplaneError` is raised.
        """
        node = self.node
        try:
            position = await self.store.append(topic, frame)
        except BackplaneError:
            recipients = self.registry.select(OP_TOPIC, topic, exclude, exclude_users)
            self.registry.fan_out(recipients, frame)
            packet = encode_packet(
                node.node_id, OP_TOPIC, topic, frame, exclude=exclude, exclude_users=exclude_users
            )
            with contextlib.suppress(BackplaneError):
                await node.publish(topic_channel(topic), packet)
            raise
        item = Item(position, stamp_frame(frame, topic, position), exclude, exclude_users)
        delivered = self._arrive(topic, item)
        packet = encode_packet(
            node.node_id,
            OP_TOPIC,
            topic,
            item.frame,
            exclude=exclude,
            exclude_users=exclude_users,
            position=position,
        )
        await node.publish(topic_channel(topic), packet)
        return delivered

    def on_packet(self, packet: Packet) -> None:
        """A packet of another node carrying a position (``Node.sequenced``)."""
        if packet.position is None or packet.frame is None:
            return
        item = Item(Position(*packet.position), packet.frame, packet.exclude, packet.exclude_users)
        self._arrive(packet.target, item)

    def _arrive(self, topic: str, item: Item) -> int:
        """Push ``item`` through the topic's sequencer and deliver what it releases;
        return how many local connections got ``item`` itself now."""
        state = self._topics.get(topic)
        if state is None:  # no local subscriber (or not a history topic here)
            recipients = self.registry.select(OP_TOPIC, topic, item.exclude, item.exclude_users)
            return self.registry.fan_out(recipients, item.frame)
        return self._release(state, self._push(state, item), item)

    def _push(self, state: _Topic, item: Item) -> list[Item]:
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

    def _release(self, state: _Topic, items: Iterable[Item], mine: Item | None = None) -> int:
        count = 0
        for item in items:
            last = state.last
            if last is not None and not _follows(last, item.position):
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

    def _deliver(self, state: _Topic, item: Item) -> int:
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
                logger.warning(
                    "connection %s is a slow consumer (replay buffer full); closing",
                    connection.connection_id,
                )
                connection.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")
        return delivered

    def _notice(self, state: _Topic, position: Position) -> None:
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
        state = self._topics[topic] = _Topic(topic)
        task = asyncio.get_running_loop().create_task(
            self._follow(state), name=f"tempest_ws history follow {topic[:64]}"
        )
        state.ready = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, state: _Topic) -> None:
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
        for _ in range(_QUIESCE_ROUNDS):
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
            self._gapped.discard(topic)
            for other in state.catchups.values():
                if not other.finished.done():
                    other.finished.set_result(None)

    # -- subscribing with a position ---------------------------------------------------

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
        on its live messages of the topic are buffered until :meth:`catch_up`."""
        self.follow(topic)
        state = self._topics[topic]
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
        await self.ready(topic)
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
            recovery = Recovery((), False, state.last or _UNKNOWN)
        if state.catchups.get(catchup.connection.connection_id) is not catchup:
            return  # it left the topic meanwhile (or closed): end() has nothing to do
        epoch = recovery.position.epoch
        replay = [
            Item(at, stamp_frame(entry.frame, topic, at), _NONE, _NONE)
            for entry in recovery.entries
            for at in (Position(entry.offset, epoch),)
        ]
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
        items = catchup.seam.finish(_UNKNOWN)
        state = catchup.topic
        if state.catchups.get(catchup.connection.connection_id) is not catchup:
            catchup.finished.set_result(None)
            return
        self._finish(catchup, self._with_notices(catchup, _UNKNOWN, items))

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
            if self.registry.fan_out((connection,), frame) == 0:
                break  # closing (a full queue closed it 1013)
        state = catchup.topic
        last = state.last
        cid = connection.connection_id
        if state.catchups.get(cid) is catchup and last is not None and catchup.seam.settled(last):
            del state.catchups[cid]

    # -- mending gaps ------------------------------------------------------------------

    def _watch(self, state: _Topic) -> None:
        seq = state.seq
        gap = None if seq is None else seq.gap
        if gap is None:
            state.gap = None
            state.failures = 0
            if state.suspect is None:
                self._gapped.discard(state.name)
            return
        if state.gap is None or state.gap[0] != gap:
            state.gap = (gap, self._clock())
            state.failures = 0
            self._gapped.add(state.name)
            self._wake()

    def _wake(self) -> None:
        if self._mender is None or self._mender.done():
            self._mender = asyncio.get_running_loop().create_task(
                self._mend(), name="tempest_ws history gaps"
            )

    async def _mend(self) -> None:
        """Fill or give up each gap older than ``gap_timeout``; exit when none is left."""
        try:
            while self._gapped:
                now = self._clock()
                due: list[_Topic] = []
                wait = self.gap_timeout
                for name in list(self._gapped):
                    state = self._topics.get(name)
                    if state is None or (state.gap is None and state.suspect is None):
                        self._gapped.discard(name)
                    elif state.suspect is not None:
                        due.append(state)
                    elif state.gap is not None:
                        left = state.gap[1] + self.gap_timeout - now
                        if left <= 0:
                            due.append(state)
                        else:
                            wait = min(wait, left)
                for state in due:
                    await self._mend_topic(state)
                if not due and self._gapped:
                    await asyncio.sleep(wait)
        except Exception:  # the task boundary: log, the next gap starts a new task
            logger.exception("history gap task failed")

    async def _mend_topic(self, state: _Topic) -> None:
        if state.suspect is not None:
            await self._check_epoch(state)
        seq = state.seq
        if seq is None or seq.gap is None or self._topics.get(state.name) is not state:
            self._watch(state)
            return
        try:
            recovery = await self.store.since(
                state.name, seq.next_offset - 1, seq.epoch, limit=self.policy.recovery_limit
            )
        except BackplaneError as exc:
            state.failures += 1
            logger.warning("gap on history topic %s not filled: %s", state.name, exc)
            if state.failures < _MEND_ATTEMPTS and state.gap is not None:
                state.gap = (state.gap[0], self._clock())  # try again after the timeout
                return
            released = seq.skip()
        else:
            if self._topics.get(state.name) is not state or state.seq is not seq:
                return
            released = self._fill(state, seq, recovery) if recovery.recovered else []
            if seq.gap is not None:
                released.extend(seq.skip())
        self._release(state, released)
        self._watch(state)

    def _fill(self, state: _Topic, seq: Sequencer[Item], recovery: Recovery) -> list[Item]:
        epoch = recovery.position.epoch
        entries = [
            (at, Item(at, stamp_frame(entry.frame, state.name, at), _NONE, _NONE))
            for entry in recovery.entries
            for at in (Position(entry.offset, epoch),)
        ]
        held = seq.held
        released = seq.fill(entries)
        self.filled += len(released) - (held - seq.held)  # those it did not hold already
        return released

    async def _check_epoch(self, state: _Topic) -> None:
        """The sequencer dropped messages of an epoch as stale: when the store says that
        epoch is current after all (clocks apart across a failover), follow it."""
        epoch, state.suspect = state.suspect, None
        try:
            latest = await self.store.latest(state.name)
        except BackplaneError as exc:
            logger.warning("epoch check of history topic %s failed: %s", state.name, exc)
            return
        seq = state.seq
        if seq is None or self._topics.get(state.name) is not state:
            return
        if latest.epoch != epoch or seq.epoch == epoch:
            return
        logger.warning("history topic %s: following epoch %s again", state.name, epoch)
        released = seq.restart(epoch)
        try:
            recovery = await self.store.since(
                state.name, 0, epoch, limit=self.policy.recovery_limit
            )
        except BackplaneError:
            recovery = Recovery((), False, latest)
        if state.seq is seq and recovery.recovered:
            released.extend(self._fill(state, seq, recovery))
        self._release(state, released)
