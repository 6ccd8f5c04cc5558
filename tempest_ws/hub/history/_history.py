"""The hub's message history: stamp, sequence, replay and mend the history topics.

Every delivery on a topic the [`HistoryPolicy`][tempest_ws.history.HistoryPolicy] keeps
goes through [`HubHistory`][tempest_ws.hub.history._history.HubHistory] (see
``docs/history.md``, "How the hub uses the history"). It composes one collaborator per
job, each in its own module, built in this order (each gets what it needs):

- [`Release`][tempest_ws.hub.history._release.Release]: local delivery of released
  messages, with a ``recovered: false`` notice before a skip;
- [`Mender`][tempest_ws.hub.history._mend.Mender]: one gap task per hub, which fills a
  gap from the store after ``gap_timeout`` or gives it up;
- [`Sequencing`][tempest_ws.hub.history._sequence.Sequencing]: the followed topics and
  their sequencers, fed by the packets of other nodes;
- [`Catchups`][tempest_ws.hub.history._catchup.Catchups]: subscribing with a position
  (replay, ``recovery`` envelope, seam);
- [`Publisher`][tempest_ws.hub.history._publish.Publisher]: append, stamp, deliver here,
  publish with the position.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tempest_ws._bounded import STOP_TIMEOUT, bounded, cancel_tasks
from tempest_ws.backplane.packet import Packet
from tempest_ws.history.base import AppendPublish, HistoryPage, HistoryStore, Position
from tempest_ws.history.policy import HistoryPolicy
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._node import Node
from tempest_ws.hub._registry import Registry
from tempest_ws.hub.history._catchup import Catchups
from tempest_ws.hub.history._mend import Mender
from tempest_ws.hub.history._publish import Publisher
from tempest_ws.hub.history._release import Release
from tempest_ws.hub.history._sequence import Sequencing
from tempest_ws.hub.history._topic import Catchup, HistoryStats, TopicState

__all__ = ["HubHistory"]

logger = logging.getLogger("tempest_ws.history")


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
        append_publish: the store's one-round-trip append and publish for the node's
            backplane ([`joined_with()`][tempest_ws.history.RedisHistory.joined_with]), if it
            offers one; else a publish appends, then publishes.
        append_now: the store's append without a coroutine, if its appends await
            nothing (``MemoryHistory.append_now``).
        clock: monotonic seconds (the gap timer).
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
        append_now: Callable[[str, str], Position] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.policy = policy
        self.gap_timeout = gap_timeout
        self.append_publish = append_publish
        self.replay_limit = min(policy.recovery_limit, max(1, queue_size // 2))
        topics: dict[str, TopicState] = {}
        self._topics = topics
        self.release = Release(registry)
        self.mender = Mender(
            store, policy, topics, self.release, gap_timeout=gap_timeout, clock=clock
        )
        self.sequencing = Sequencing(store, topics, registry, node.want, self.release, self.mender)
        self.catchups = Catchups(
            store,
            registry,
            self.sequencing,
            topics,
            queue_size=queue_size,
            replay_limit=self.replay_limit,
        )
        self.publisher = Publisher(
            store, registry, node, self.sequencing, topics, append_publish, append_now
        )
        self.broadcast = self.publisher.broadcast
        """[`Publisher.broadcast()`][tempest_ws.hub.history._publish.Publisher.broadcast]
        (bound here: one coroutine less per publish)."""
        self.broadcast_now = self.publisher.broadcast_now
        """[`Publisher.broadcast_now()`][tempest_ws.hub.history._publish.Publisher.broadcast_now]:
        the same without a coroutine when nothing would wait, else ``None``."""

    def stats(self) -> HistoryStats:
        """The counters as a `HistoryStats` (no I/O; one step per followed topic)."""
        skipped, stale = self.sequencing.counts()
        catchups, publisher = self.catchups, self.publisher
        return HistoryStats(
            topics_followed=len(self._topics),
            appends=publisher.appended,
            append_failures=publisher.append_failures,
            replays_recovered=catchups.recovered,
            replays_unrecovered=catchups.unrecovered,
            messages_replayed=catchups.replayed,
            gap_messages_filled=self.mender.filled,
            gap_messages_skipped=skipped,
            discontinuity_notices=self.release.notices,
            stale_messages_dropped=stale,
            seams_overflowed=self.release.overflowed,
        )

    def keeps(self, topic: str) -> bool:
        """Whether ``topic`` keeps history (a topic followed here does: no pattern match)."""
        return topic in self._topics or self.policy.keeps(topic)

    async def stop(self, limit: float = STOP_TIMEOUT) -> None:
        """Cancel and await the mending and following tasks, forget every topic, close
        the store. The tasks and the store's ``aclose`` get ``limit`` seconds each; past
        that they are abandoned (logged on ``tempest_ws.shutdown``)."""
        tasks = [*self.sequencing.tasks, self.mender.task]
        await cancel_tasks(tasks, "history task", limit=limit)
        self.mender.reset()
        for state in self._topics.values():
            self.sequencing.forget(state)
            for catchup in state.catchups.values():
                if not catchup.finished.done():
                    catchup.finished.set_result(None)
        self._topics.clear()
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

    # -- what the hub's other parts call -----------------------------------------------

    def on_packet(self, packet: Packet) -> int:
        """A packet of another node carrying a position (the node's ``sequenced``)."""
        return self.sequencing.on_packet(packet)

    async def quiesce(self, connection_id: str, topic: str) -> None:
        """Wait until a catch-up of this connection on ``topic`` in progress ends."""
        await self.catchups.quiesce(connection_id, topic)

    def begin(self, connection: WebSocketConnection, topic: str) -> Catchup:
        """Install a seam for ``connection`` on ``topic`` (see `Catchups.begin()`)."""
        return self.catchups.begin(connection, topic)

    async def catch_up(
        self, catchup: Catchup, position: Position | None, request_id: str | None
    ) -> None:
        """Replay since ``position`` (see `Catchups.catch_up()`)."""
        await self.catchups.catch_up(catchup, position, request_id)

    def end(self, catchup: Catchup) -> None:
        """Make sure ``catchup`` ended (see `Catchups.end()`)."""
        self.catchups.end(catchup)

    def left(self, topic: str, connection_id: str, *, last: bool) -> None:
        """A connection left ``topic``; ``last``: no local subscriber remains."""
        self.sequencing.left(topic, connection_id, last=last)
