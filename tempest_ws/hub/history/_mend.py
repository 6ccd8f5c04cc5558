"""The hub's gap task: fill a history topic's gaps from the store, or give them up.

A collaborator of [`HubHistory`][tempest_ws.hub.history._history.HubHistory]. A topic's
sequencer holds messages behind a missing offset; one
task per hub (started when a gap appears, gone when none is left, cancelled by
``HubHistory.stop``) waits ``gap_timeout``, then reads the missing messages from the
store and releases them in order. When the store no longer has them (trimmed, another
epoch) or stays unreachable (three attempts), the gap is given up: the held messages
are released, preceded by a ``recovered: false`` notice. The same task checks an epoch
the sequencer dropped as stale against the store and follows it when the store says it
is current (clocks far apart across a failover).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from tempest_ws.exceptions import BackplaneError
from tempest_ws.history.base import HistoryStore, Position, Recovery
from tempest_ws.history.policy import HistoryPolicy
from tempest_ws.history.seam import Sequencer
from tempest_ws.history.wire import stamp_frame
from tempest_ws.hub.history._release import Release
from tempest_ws.hub.history._topic import NO_EXCLUSIONS, Item, TopicState

__all__ = ["Mender"]

logger = logging.getLogger("tempest_ws.history")

_MEND_ATTEMPTS = 3  # store failures before a gap is given up


class Mender:
    """The gap task of one hub's history (see the module docstring).

    Args:
        store: where missing messages are read back.
        policy: the recovery limit (how many messages one read may return).
        topics: the history topics this node follows, shared with the sequencing.
        release: what delivers the messages a filled or given-up gap releases.
        gap_timeout: seconds a gap may stay open before it is filled or given up.
        clock: monotonic seconds.
    """

    def __init__(
        self,
        store: HistoryStore,
        policy: HistoryPolicy,
        topics: dict[str, TopicState],
        release: Release,
        *,
        gap_timeout: float,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.policy = policy
        self.gap_timeout = gap_timeout
        self.gapped: set[str] = set()
        """Topics with a gap open or an epoch to check."""
        self.task: asyncio.Task[None] | None = None
        """The gap task while one runs."""
        self.filled = 0
        """Messages fetched from the store to fill gaps."""
        self._topics = topics
        self._release = release
        self._clock = clock

    def suspect(self, state: TopicState, epoch: str) -> None:
        """The sequencer dropped messages of ``epoch`` as stale: check it against the store."""
        state.suspect = epoch
        self.gapped.add(state.name)
        self._wake()

    def reset(self) -> None:
        """Forget the gaps and the (cancelled) task: the history stopped."""
        self.task = None
        self.gapped.clear()

    def watch(self, state: TopicState) -> None:
        """Start (or forget) the timer of the topic's gap after its sequencer moved."""
        seq = state.seq
        gap = None if seq is None else seq.gap
        if gap is None:
            state.gap = None
            state.failures = 0
            if state.suspect is None:
                self.gapped.discard(state.name)
            return
        if state.gap is None or state.gap[0] != gap:
            state.gap = (gap, self._clock())
            state.failures = 0
            self.gapped.add(state.name)
            self._wake()

    def _wake(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(
                self._mend(), name="tempest_ws history gaps"
            )

    async def _mend(self) -> None:
        """Fill or give up each gap older than ``gap_timeout``; exit when none is left."""
        try:
            while self.gapped:
                now = self._clock()
                due: list[TopicState] = []
                wait = self.gap_timeout
                for name in list(self.gapped):
                    state = self._topics.get(name)
                    if state is None or (state.gap is None and state.suspect is None):
                        self.gapped.discard(name)
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
                if not due and self.gapped:
                    await asyncio.sleep(wait)
        except Exception:  # the task boundary: log, the next gap starts a new task
            logger.exception("history gap task failed")

    async def _mend_topic(self, state: TopicState) -> None:
        if state.suspect is not None:
            await self._check_epoch(state)
        seq = state.seq
        if seq is None or seq.gap is None or self._topics.get(state.name) is not state:
            self.watch(state)
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
            if recovery.recovered:
                released = self._fill(state, seq, recovery)
                read = recovery.position
                gap = seq.gap  # a gap past what was read opened meanwhile: its own timer
                if gap is not None and seq.epoch == read.epoch and gap <= read.offset:
                    released.extend(seq.skip())
            else:
                released = seq.skip()
        self._release.release(state, released)
        self.watch(state)

    def _fill(self, state: TopicState, seq: Sequencer[Item], recovery: Recovery) -> list[Item]:
        epoch = recovery.position.epoch
        entries = [
            (at, Item(at, stamp_frame(entry.frame, state.name, at), NO_EXCLUSIONS, NO_EXCLUSIONS))
            for entry in recovery.entries
            for at in (Position(entry.offset, epoch),)
        ]
        held = seq.held
        released = seq.fill(entries)
        self.filled += len(released) - (held - seq.held)  # those it did not hold already
        return released

    async def _check_epoch(self, state: TopicState) -> None:
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
        self._release.release(state, released)
