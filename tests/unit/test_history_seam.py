"""The replay/live seam and the per-topic live order, as properties.

The model: publishers append to a store (which assigns offsets) and put the message "in
flight"; in-flight messages reach the node in any order, or never (a failed publish);
the node's `Sequencer` releases them in offset order, filling gaps from the store
when the hub's gap timer fires. Subscriber A follows the topic from the start;
subscriber B joins at any moment with a stored position: it is registered for live
delivery (a `Seam` buffers), its replay is read from the store later, and the
seam is finished later still, while messages keep flowing. Hypothesis chooses every
interleaving. With no history trimmed and no data loss, both get every message after
their position exactly once, in order; otherwise neither ever gets a duplicate or an
out-of-order message.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass, field
from typing import Protocol

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tempest_ws.history import Entry, MemoryHistory, Position, Recovery, Seam, Sequencer

Item = tuple[str, int]  # (epoch, offset): what a frame is, for these checks


class Draw(Protocol):
    def draw(self, strategy: st.SearchStrategy[int]) -> int: ...


@dataclass
class ModelStore:
    """The store's semantics (see the contract test), with epochs we can order."""

    max_messages: int | None = None
    generation: int = 1
    count: int = 0

    @property
    def epoch(self) -> str:
        return f"{self.generation:020d}"

    def append(self) -> Position:
        self.count += 1
        return Position(self.count, self.epoch)

    def since(self, offset: int, epoch: str) -> Recovery:
        latest = Position(self.count, self.epoch)
        oldest = 1 if self.max_messages is None else max(1, self.count - self.max_messages + 1)
        if epoch != self.epoch or offset > self.count or offset + 1 < oldest:
            return Recovery((), False, latest)
        entries = tuple(Entry(o, "") for o in range(offset + 1, self.count + 1))
        return Recovery(entries, True, latest)

    def lose_data(self) -> None:
        self.generation += 1
        self.count = 0


@dataclass
class Node:
    store: ModelStore
    sequencer: Sequencer[Item]
    in_flight: list[Position] = field(default_factory=list)
    a: list[Item] = field(default_factory=list)
    b: list[Item] = field(default_factory=list)
    seam: Seam[Item] | None = None
    b_from: Position | None = None
    b_read: Recovery | None = None
    b_state: str = "out"  # out -> buffering -> read -> draining -> live

    def release(self, items: list[Item]) -> None:
        for item in items:
            self.a.append(item)
            if self.b_state == "live":
                self.b.append(item)
            elif self.seam is not None:
                self.b.extend(self.seam.live(Position(item[1], item[0]), item))
        self.settle()

    def settle(self) -> None:
        """The hub drops B's seam once the topic's live stream has passed its replay."""
        seam = self.seam
        if (
            self.b_state == "draining"
            and seam is not None
            and seam.settled(self.sequencer.position)
        ):
            self.b_state = "live"

    def fill_gap(self, *, tail: bool = False) -> None:
        """The hub's gap timer; ``tail``: also when nothing is held (a lost last message
        is only revealed by the next one, or by comparing with the store's latest)."""
        sequencer = self.sequencer
        if sequencer.gap is None and not tail:
            return
        recovery = self.store.since(sequencer.next_offset - 1, sequencer.epoch)
        if recovery.recovered:
            epoch = recovery.position.epoch
            entries = [(Position(e.offset, epoch), (epoch, e.offset)) for e in recovery.entries]
            self.release(sequencer.fill(entries))
        else:
            self.release(sequencer.skip())

    def step(self, action: str, data: Draw) -> None:
        if action == "publish":
            self.in_flight.append(self.store.append())
        elif action == "arrive" and self.in_flight:
            index = data.draw(st.integers(0, len(self.in_flight) - 1))
            position = self.in_flight.pop(index)
            self.release(self.sequencer.push(position, (position.epoch, position.offset)))
        elif action == "drop" and self.in_flight:
            self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))
        elif action == "gap_timer":
            self.fill_gap()
        elif action == "lose_data":
            self.store.lose_data()
        elif action == "join" and self.b_state == "out":
            self.seam = Seam()
            self.b_state = "buffering"
            offset = data.draw(st.integers(0, self.store.count))
            self.b_from = Position(offset, self.store.epoch)
        elif action == "read" and self.b_state == "buffering":
            assert self.b_from is not None
            self.b_read = self.store.since(self.b_from.offset, self.b_from.epoch)
            self.b_state = "read"
        elif action == "finish" and self.b_state == "read":
            assert self.seam is not None
            assert self.b_read is not None
            epoch = self.b_read.position.epoch
            replay = [(epoch, e.offset) for e in self.b_read.entries]
            self.b.extend(self.seam.finish(self.b_read.position, replay))
            self.b_state = "draining"
            self.settle()

    def drain(self) -> None:
        """Everything in flight arrives; the gap timer fires until no gap is left."""
        for name in ("join", "read", "finish"):
            self.step(name, _NoDraw())
        while self.in_flight:
            position = self.in_flight.pop()
            self.release(self.sequencer.push(position, (position.epoch, position.offset)))
        self.fill_gap(tail=True)


class _NoDraw:
    def draw(self, strategy: st.SearchStrategy[int]) -> int:
        return 0


def ordered_without_duplicates(items: list[Item]) -> bool:
    return all(earlier < later for earlier, later in itertools.pairwise(items))


ACTIONS = ["publish", "publish", "arrive", "arrive", "gap_timer", "join", "read", "finish"]


@settings(max_examples=300, deadline=None)
@given(data=st.data(), with_drops=st.booleans())
def test_no_gap_and_no_duplicate_across_the_seam(data: st.DataObject, with_drops: bool) -> None:
    store = ModelStore()
    node = Node(store, Sequencer(Position(0, store.epoch)))
    actions = ACTIONS + (["drop"] if with_drops else [])
    for _ in range(data.draw(st.integers(0, 60))):
        node.step(data.draw(st.sampled_from(actions)), data)
    node.drain()

    epoch = store.epoch
    everything = [(epoch, n) for n in range(1, store.count + 1)]
    assert node.a == everything
    assert node.b_from is not None
    assert node.b == everything[node.b_from.offset :]
    assert node.sequencer.skipped == 0
    assert node.sequencer.held == 0


@settings(max_examples=300, deadline=None)
@given(data=st.data(), max_messages=st.integers(1, 6))
def test_trimming_and_data_loss_never_duplicate_or_reorder(
    data: st.DataObject, max_messages: int
) -> None:
    store = ModelStore(max_messages=max_messages)
    node = Node(store, Sequencer(Position(0, store.epoch), max_held=8))
    actions = [*ACTIONS, "drop", "lose_data"]
    for _ in range(data.draw(st.integers(0, 60))):
        node.step(data.draw(st.sampled_from(actions)), data)
    node.drain()
    assert ordered_without_duplicates(node.a)
    assert ordered_without_duplicates(node.b)
    assert node.b_read is not None
    replayed = {(node.b_read.position.epoch, e.offset) for e in node.b_read.entries}
    assert set(node.b) <= set(node.a) | replayed
    assert node.sequencer.held == 0


# -- Seam and Sequencer on their own -------------------------------------------------------------


@given(
    client=st.integers(0, 30),
    replay_extra=st.integers(0, 30),
    live_start_back=st.integers(0, 30),
    live_extra=st.integers(0, 30),
    buffered=st.integers(0, 60),
)
def test_seam_joins_replay_and_live(
    client: int, replay_extra: int, live_start_back: int, live_extra: int, buffered: int
) -> None:
    """Replay = client+1..read; live (already in order) starts anywhere up to read+1."""
    epoch = "e"
    read = client + replay_extra
    live_start = max(1, read + 1 - live_start_back)
    final = read + live_extra
    seam: Seam[int] = Seam()
    live = list(range(live_start, final + 1))
    split = min(buffered, len(live))
    for offset in live[:split]:
        assert seam.live(Position(offset, epoch), offset) == []
    out = seam.finish(Position(read, epoch), range(client + 1, read + 1))
    for offset in live[split:]:
        out.extend(seam.live(Position(offset, epoch), offset))
    assert out == list(range(client + 1, final + 1))
    assert seam.position == Position(max(read, final), epoch)


def test_seam_edges() -> None:
    seam: Seam[str] = Seam(max_buffer=2)
    assert seam.replaying
    for offset in (5, 4, 4, 7):
        seam.live(Position(offset, "b"), f"b{offset}")
    assert seam.overflowed  # the hub closes this subscriber as a slow consumer
    seam = Seam()
    seam.live(Position(9, "a"), "stale epoch")
    seam.live(Position(6, "b"), "b6")
    seam.live(Position(1, "c"), "c1")
    seam.live(Position(5, "b"), "b5")
    assert seam.finish(Position(4, "b"), ["b3", "b4"]) == ["b3", "b4", "b5", "b6", "c1"]
    assert seam.position == Position(1, "c")
    assert seam.live(Position(1, "c"), "again") == []
    assert seam.live(Position(7, "b"), "old epoch") == []
    assert seam.live(Position(2, "c"), "c2") == ["c2"]
    with pytest.raises(RuntimeError):
        seam.finish(Position(0, "c"))
    with pytest.raises(ValueError, match="max_buffer"):
        Seam(max_buffer=0)


def test_sequencer_edges() -> None:
    sequencer: Sequencer[int] = Sequencer(Position(10, "b"), max_held=3)
    assert sequencer.push(Position(10, "b"), 10) == []  # at or before the start
    assert sequencer.push(Position(12, "b"), 12) == []
    assert sequencer.gap == 11
    assert sequencer.push(Position(12, "b"), 12) == []  # held once
    assert sequencer.push(Position(11, "b"), 11) == [11, 12]
    assert sequencer.held == 0  # no gap left
    for offset in (14, 15, 16):
        assert sequencer.push(Position(offset, "b"), offset) == []
    assert sequencer.push(Position(17, "b"), 17) == [14, 15, 16, 17]  # past max_held
    assert sequencer.skipped == 1
    assert sequencer.push(Position(19, "b"), 19) == []
    assert sequencer.push(Position(99, "a"), 99) == []  # older epoch: stale
    assert sequencer.stale == 1
    assert sequencer.push(Position(2, "c"), 2) == [19]  # newer epoch: release, restart at 1
    assert (sequencer.epoch, sequencer.resets, sequencer.gap) == ("c", 1, 1)
    assert sequencer.fill([(Position(n, "c"), n) for n in (1, 2, 3)]) == [1, 2, 3]
    assert sequencer.position == Position(3, "c")
    assert sequencer.skip() == []
    assert sequencer.push(Position(5, "c"), 5) == []
    assert sequencer.restart("a") == [5]  # the store says "a" is current after all
    assert sequencer.push(Position(1, "a"), 1) == [1]
    assert sequencer.resets == 2
    with pytest.raises(ValueError, match="max_held"):
        Sequencer(Position(0, "x"), max_held=0)


def test_next_in_line_releases_only_what_push_would_release_alone() -> None:
    sequencer: Sequencer[int] = Sequencer(Position(10, "b"))
    assert sequencer.next_in_line(Position(11, "b"))
    assert sequencer.position == Position(11, "b")
    for other in (Position(11, "b"), Position(13, "b"), Position(12, "a"), Position(12, "c")):
        assert not sequencer.next_in_line(other)  # old, ahead, stale, newer epoch
    assert sequencer.position == Position(11, "b")
    assert sequencer.push(Position(13, "b"), 13) == []
    assert not sequencer.next_in_line(Position(12, "b"))  # something is held: push it
    assert sequencer.push(Position(12, "b"), 12) == [12, 13]
    assert sequencer.next_in_line(Position(14, "b"))


# -- real tasks, real store ----------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(8))
async def test_concurrent_publishers_and_a_joining_subscriber(seed: int) -> None:
    """Real asyncio tasks on MemoryHistory: publishers append then deliver after random
    yields (so deliveries reorder); a subscriber joins mid-stream and reads its replay
    across yields while deliveries continue."""
    rng = random.Random(seed)
    store = MemoryHistory()
    topic = "chat:1"
    start = await store.latest(topic)
    sequencer: Sequencer[int] = Sequencer(start)
    a: list[int] = []
    b: list[int] = []
    seam: Seam[int] | None = None
    client = Position(0, start.epoch)
    joined = asyncio.Event()

    def deliver(position: Position) -> None:
        for offset in sequencer.push(position, position.offset):
            a.append(offset)
            if seam is None:
                continue
            b.extend(seam.live(Position(offset, position.epoch), offset))

    async def publisher(count: int) -> None:
        for n in range(count):
            position = await store.append(topic, f'"{n}"')
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)
            deliver(position)
            if n == 10:
                joined.set()

    async def subscriber() -> None:
        nonlocal seam, client
        await joined.wait()
        latest = await store.latest(topic)
        client = Position(rng.randrange(latest.offset + 1), latest.epoch)
        seam = Seam()  # registered for live delivery first...
        for _ in range(rng.randrange(6)):
            await asyncio.sleep(0)
        recovery = await store.since(topic, client.offset, client.epoch, limit=10_000)
        assert recovery.recovered
        for _ in range(rng.randrange(6)):  # ...the read's answer takes a while...
            await asyncio.sleep(0)
        b.extend(seam.finish(recovery.position, [e.offset for e in recovery.entries]))

    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        for _ in range(4):
            group.create_task(publisher(40))
        group.create_task(subscriber())
    for _ in range(sequencer.held + 1):  # the gap timer: fill from the store
        if sequencer.gap is not None:
            recovery = await store.since(
                topic, sequencer.next_offset - 1, sequencer.epoch, limit=999
            )
            for offset in sequencer.fill(
                [(Position(e.offset, start.epoch), e.offset) for e in recovery.entries]
            ):
                a.append(offset)
                b.append(offset)
    assert a == list(range(1, 161))
    assert b == list(range(client.offset + 1, 161))
