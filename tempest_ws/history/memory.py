"""``MemoryHistory``: a bounded ring per topic, in this process's memory.

For one process (the in-memory backplane). Each topic's epoch is a random id drawn when
the topic's history starts here, so after a restart every client position is from an
old epoch and is answered ``recovered=False``, as it must be: the messages are gone.

Bounds: at most ``max_messages`` per topic (exactly), none older than ``max_age``, and a
topic quiet for ``meta_ttl`` is forgotten entirely (its next message starts a new epoch),
so memory follows the topics in use, not every topic ever seen. Every method completes
without awaiting anything, so appends from one event loop are totally ordered.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import islice

from tempest_ws.history.base import (
    Entry,
    HistoryPage,
    Position,
    Recovery,
    check_limit,
    check_offset,
    check_topic,
    new_epoch,
)
from tempest_ws.history.policy import HistoryPolicy

__all__ = ["MemoryHistory"]

# Position(offset, epoch) without the Python-level __new__ of a NamedTuple: the same
# tuple, made once per appended message.
_new_position = tuple.__new__


@dataclass(eq=False, slots=True)
class _Ring:
    epoch: str
    touched: float
    entries: deque[tuple[float, int, str]]  # (at, offset, frame); bounded: drops the oldest
    offset: int = 0


class MemoryHistory:
    """A [`HistoryStore`][tempest_ws.history.HistoryStore] in memory, for one process.

    Args:
        policy: the bounds (``max_messages``, ``max_age``, ``meta_ttl``); the topic
            patterns are the hub's business, not the store's.
        clock: monotonic seconds (injected by tests to age messages without sleeping).
    """

    def __init__(
        self,
        policy: HistoryPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy or HistoryPolicy()
        self._max_age = self.policy.max_age
        self._max_messages = self.policy.max_messages
        self._clock = clock
        self._rings: OrderedDict[str, _Ring] = OrderedDict()  # least recently used first
        self._epoch_us = 0
        self._lapse_at = math.inf  # no ring can lapse before then

    def __repr__(self) -> str:
        return f"<MemoryHistory topics={len(self._rings)}>"

    def _ring(self, topic: str, now: float) -> _Ring:
        """The topic's ring (a new epoch if it had none or it lapsed), expired entries
        dropped; forgets rings quiet for longer than ``meta_ttl``."""
        rings = self._rings
        if now >= self._lapse_at:
            self._forget_lapsed(now)
        ring = rings.get(topic)
        if ring is None:
            # Epochs made here strictly increase, even within one microsecond.
            self._epoch_us = max(time.time_ns() // 1_000, self._epoch_us + 1)
            ring = rings[topic] = _Ring(
                new_epoch(self._epoch_us), now, deque(maxlen=self._max_messages)
            )
            self._lapse_at = min(self._lapse_at, now + self.policy.meta_ttl)
        else:
            ring.touched = now
            rings.move_to_end(topic)
        entries = ring.entries
        if entries and entries[0][0] < now - self._max_age:
            self._expire(entries, now)
        return ring

    def _expire(self, entries: deque[tuple[float, int, str]], now: float) -> None:
        """Drop the entries older than ``max_age`` (the oldest are first)."""
        cutoff = now - self._max_age
        while entries and entries[0][0] < cutoff:
            entries.popleft()

    def _forget_lapsed(self, now: float) -> None:
        """Drop the rings quiet for longer than ``meta_ttl`` (least recently used first,
        so only those at the front are visited); note when the next one can lapse."""
        rings = self._rings
        ttl = self.policy.meta_ttl
        while rings:
            oldest = next(iter(rings.values()))
            if oldest.touched >= now - ttl:
                self._lapse_at = oldest.touched + ttl
                return
            rings.popitem(last=False)
        self._lapse_at = math.inf

    def append_now(self, topic: str, frame: str) -> Position:
        """`append()` without a coroutine: the hub's publishing path calls this (the
        store awaits nothing). O(1): the frame is stored as given, next to its time
        and offset; the oldest message goes once past ``max_messages``.

        Raises:
            ValueError: ``topic`` is empty or longer than 256 characters.
            TypeError: ``frame`` is not a ``str``.
        """
        if not isinstance(frame, str):
            raise TypeError("frame must be a str")
        now = self._clock()
        ring = self._rings.get(topic)
        if ring is None or now >= self._lapse_at:
            check_topic(topic)  # a topic with a ring was checked when it got it
            ring = self._ring(topic, now)
        else:  # _ring(), inlined for the common case: a ring in use
            ring.touched = now
            self._rings.move_to_end(topic)
            entries = ring.entries
            if entries and entries[0][0] < now - self._max_age:
                self._expire(entries, now)
        ring.offset = offset = ring.offset + 1
        # An Entry is made only when read; past max_messages the deque drops the oldest.
        ring.entries.append((now, offset, frame))
        return _new_position(Position, (offset, ring.epoch))

    async def append(self, topic: str, frame: str) -> Position:
        """Store ``frame`` as ``topic``'s next message; drop the oldest past the bounds."""
        return self.append_now(topic, frame)

    async def since(self, topic: str, offset: int, epoch: str, *, limit: int) -> Recovery:
        """What ``topic`` got after ``Position(offset, epoch)``: all of it, or nothing
        and ``recovered=False``."""
        check_topic(topic)
        check_offset(offset)
        check_limit(limit)
        ring = self._ring(topic, self._clock())
        position = Position(ring.offset, ring.epoch)
        missed = ring.offset - offset
        if epoch != ring.epoch or missed < 0 or missed > limit:
            return Recovery((), False, position)
        if missed == 0:
            return Recovery((), True, position)
        entries = ring.entries
        if len(entries) < missed:  # trimmed by count or age past the asked offset
            return Recovery((), False, position)
        newest_first = [Entry(o, f) for _, o, f in islice(reversed(entries), missed)]
        return Recovery(tuple(reversed(newest_first)), True, position)

    async def latest(self, topic: str) -> Position:
        """``topic``'s latest position; starts its epoch if it has none."""
        check_topic(topic)
        ring = self._ring(topic, self._clock())
        return Position(ring.offset, ring.epoch)

    async def history(self, topic: str, *, since: int | None = None, limit: int) -> HistoryPage:
        """The newest ``limit`` messages, or the oldest ``limit`` held after ``since``."""
        check_topic(topic)
        check_limit(limit)
        if since is not None:
            check_offset(since)
        ring = self._ring(topic, self._clock())
        position = Position(ring.offset, ring.epoch)
        entries = ring.entries
        if since is None:
            start = max(0, len(entries) - limit)
        else:
            start = max(0, len(entries) - max(0, ring.offset - since))
        found = tuple(Entry(o, f) for _, o, f in islice(entries, start, start + limit))
        return HistoryPage(found, position)

    async def aclose(self) -> None:
        """Nothing to release; the history stays (the object is the process's memory)."""
