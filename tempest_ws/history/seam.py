"""Ordering without I/O: the replay/live seam of one subscriber, and one topic's live order.

Two pure state machines, generic over the item delivered (a stamped frame, or a frame
with its exclusions); the hub drives them and owns every await.

`Seam` joins **one subscriber's** replay to live delivery. The hub registers the
subscriber for live delivery first, then reads what it missed from the store; live
messages that arrive meanwhile are buffered in the seam. `Seam.finish()` returns the
replayed messages, then the buffered ones the replay did not already contain (offset
greater than the replay's last), in offset order, each once. After that the seam still
drops live messages the replay already gave (one appended before the read may reach the
node after the replay was sent) until the topic's live stream has passed the replay's
end (`Seam.settled()`); then the hub removes it.

Why no gap is possible at the seam: a message is delivered live only after it was
appended, and the read happens after the live registration, so every message appended
before the read is in the replay and every message appended after it reaches the seam
live (provided the topic's live stream itself has no gap: the `Sequencer`).

`Sequencer` puts **one topic's** live messages back in offset order on one node.
Messages of one topic published from several tasks or nodes take their offsets in the
store in one order and may reach a node in another (separate Redis connections). The
sequencer releases them in offset order: a message after a missing offset is held until
the missing one arrives, is fetched from the store (`Sequencer.fill()`), or is given
up (`Sequencer.skip()`, when the store no longer has it). A message of an older
epoch than the current one is stale and dropped; one of a newer epoch (the store lost the
topic's history and started again at offset 1) releases what was held and restarts.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from tempest_ws.history.base import Position

__all__ = ["Seam", "Sequencer"]

T = TypeVar("T")


class Seam(Generic[T]):
    """Buffers one subscriber's live messages while its replay is read, then joins them.

    Args:
        max_buffer: live messages buffered at most while replaying; past it
            `overflowed` turns true and later ones are dropped (the hub closes the
            connection as a slow consumer, as a full send queue would).
    """

    __slots__ = ("_buffer", "_last", "_max_buffer", "overflowed")

    def __init__(self, *, max_buffer: int = 10_000) -> None:
        if max_buffer < 1:
            raise ValueError("max_buffer must be at least 1")
        self._max_buffer = max_buffer
        self._buffer: list[tuple[Position, T]] = []
        self._last: Position | None = None
        self.overflowed = False

    @property
    def replaying(self) -> bool:
        """Whether `finish()` has not been called yet."""
        return self._last is None

    @property
    def position(self) -> Position | None:
        """The position of the last item released, once finished."""
        return self._last

    def settled(self, released: Position) -> bool:
        """Whether the topic's live stream, having released up to ``released``, can no
        longer bring a message this seam already gave: then the hub drops the seam and
        delivers directly. Never true while replaying."""
        last = self._last
        if last is None:
            return False
        return released.epoch > last.epoch or (
            released.epoch == last.epoch and released.offset >= last.offset
        )

    def live(self, position: Position, item: T) -> list[T]:
        """A live message: buffered (returns ``[]``) while replaying; afterwards returned
        if newer than the last item released, dropped otherwise."""
        last = self._last
        if last is None:
            if len(self._buffer) >= self._max_buffer:
                self.overflowed = True
            else:
                self._buffer.append((position, item))
            return []
        if position.epoch < last.epoch:
            return []
        if position.epoch == last.epoch and position.offset <= last.offset:
            return []
        self._last = position
        return [item]

    def finish(self, position: Position, replay: Iterable[T] = ()) -> list[T]:
        """End the replay: ``replay`` (the missed messages up to ``position``, in order),
        then the buffered live messages after ``position`` in offset order, each once,
        then buffered messages of a newer epoch in arrival order.

        ``position`` is the store's position when the replay was read
        ([`Recovery.position`][tempest_ws.history.Recovery]), whether recovered or not.

        Raises:
            RuntimeError: called twice.
        """
        if self._last is not None:
            raise RuntimeError("Seam.finish called twice")
        out = list(replay)
        last = position
        same: dict[int, T] = {}
        newer: dict[Position, T] = {}
        for at, item in self._buffer:
            if at.epoch == position.epoch:
                if at.offset > position.offset:
                    same.setdefault(at.offset, item)
            elif at.epoch > position.epoch:
                newer.setdefault(at, item)
        for offset in sorted(same):
            out.append(same[offset])
            last = Position(offset, position.epoch)
        for at, item in newer.items():
            out.append(item)
            last = at
        self._buffer = []
        self._last = last
        return out


class Sequencer(Generic[T]):
    """Releases one topic's live messages in offset order, each once.

    Args:
        start: the topic's position when this node began to follow it (its store's
            ``latest``); messages at or before it are not released.
        max_held: messages held behind a gap at most; one more gives the gap up
            (`skip()`).
    """

    __slots__ = ("_held", "_max_held", "epoch", "next_offset", "resets", "skipped", "stale")

    def __init__(self, start: Position, *, max_held: int = 10_000) -> None:
        if max_held < 1:
            raise ValueError("max_held must be at least 1")
        self.epoch = start.epoch
        self.next_offset = start.offset + 1
        self._max_held = max_held
        self._held: dict[int, T] = {}
        self.resets = 0
        """Epoch changes seen (the store lost the topic's history)."""
        self.skipped = 0
        """Offsets given up for good (never released)."""
        self.stale = 0
        """Messages dropped as from an older epoch. Should it grow while the store reports
        that epoch as current (clocks far apart across a failover), `restart()`."""

    @property
    def position(self) -> Position:
        """The position of the last message released (or the start)."""
        return Position(self.next_offset - 1, self.epoch)

    @property
    def gap(self) -> int | None:
        """The first missing offset while later messages are held, else ``None``."""
        return self.next_offset if self._held else None

    @property
    def held(self) -> int:
        """How many messages wait behind the gap."""
        return len(self._held)

    def push(self, position: Position, item: T) -> list[T]:
        """A live message; returns what can be released now, in offset order."""
        if position.epoch != self.epoch:
            if position.epoch < self.epoch:
                self.stale += 1  # sent before the store started the current epoch
                return []
            out = self.restart(position.epoch)
            out.extend(self.push(position, item))
            return out
        offset = position.offset
        expected = self.next_offset
        if offset < expected or offset in self._held:
            return []
        held = self._held
        if offset > expected:
            held[offset] = item
            return self.skip() if len(held) > self._max_held else []
        out = [item]
        expected += 1
        while held:
            following = held.pop(expected, None)
            if following is None:
                break
            out.append(following)
            expected += 1
        self.next_offset = expected
        return out

    def next_in_line(self, position: Position) -> bool:
        """Release ``position`` at once if it is the next one and nothing is held (what
        `push()` would return as ``[item]``); else change nothing and return False."""
        if self._held or position.offset != self.next_offset or position.epoch != self.epoch:
            return False
        self.next_offset += 1
        return True

    def restart(self, epoch: str) -> list[T]:
        """Follow ``epoch`` from its offset 1 on (the store lost the topic's history and
        began again): release what the old epoch still held, in offset order."""
        out = self.skip()
        self.epoch = epoch
        self.next_offset = 1
        self.resets += 1
        return out

    def fill(self, entries: Iterable[tuple[Position, T]]) -> list[T]:
        """Messages fetched from the store to fill the gap (any superset of it is fine:
        those already released or held are ignored)."""
        out: list[T] = []
        for position, item in entries:
            out.extend(self.push(position, item))
        return out

    def skip(self) -> list[T]:
        """Give up every missing offset: release all held messages in offset order."""
        held = self._held
        if not held:
            return []
        out: list[T] = []
        for offset in sorted(held):
            self.skipped += offset - self.next_offset
            out.append(held[offset])
            self.next_offset = offset + 1
        held.clear()
        return out
