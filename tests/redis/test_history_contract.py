"""One contract, every history store: the same test bodies run on MemoryHistory and on
RedisHistory against a real redis-server (no fakeredis).

A *medium* builds stores ("nodes") that share one history — the same object in one
process for memory, separate clients of one server for Redis — ages messages (a fake
clock for memory, Redis's own clock for Redis) and loses data (a process restart for
memory; ``FLUSHALL`` or a restart without persistence for Redis).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from tempest_ws.history import HistoryPolicy, HistoryStore, MemoryHistory, Position, Recovery
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import require_tool

TOPIC = "chat:1"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Medium:
    kind: str
    server: RedisServer | None = None
    clock: FakeClock = field(default_factory=FakeClock)
    stores: list[HistoryStore] = field(default_factory=list)
    _memory: dict[HistoryPolicy, MemoryHistory] = field(default_factory=dict)

    def node(self, policy: HistoryPolicy | None = None) -> HistoryStore:
        """A store sharing this medium's history (one per node)."""
        policy = policy or HistoryPolicy()
        if self.server is None:
            if policy not in self._memory:  # one process holds one history
                self._memory[policy] = MemoryHistory(policy, clock=self.clock)
            return self._memory[policy]
        from tempest_ws.history import RedisHistory

        store = RedisHistory(self.server.url, policy=policy, timeout=2.0)
        self.stores.append(store)
        return store

    async def age(self, seconds: float, done: Callable[[], Awaitable[bool]]) -> None:
        """Let ``seconds`` pass for the history, until ``done()`` (bounded)."""
        if self.server is None:
            self.clock.now += seconds
            assert await done()
            return
        async with asyncio.timeout(15):
            while not await done():
                await asyncio.sleep(0.05)

    async def quiet(self, seconds: float, topic: str) -> None:
        """Nobody touches ``topic`` for ``seconds`` (Redis: until its keys expired)."""
        if self.server is None:
            self.clock.now += seconds
            return
        from tempest_ws.history import RedisHistory

        meta, stream = RedisHistory(self.server.url).keys(topic)
        async with asyncio.timeout(15):
            while True:
                with self.server.client() as client:
                    if not client.exists(meta, stream):
                        return
                await asyncio.sleep(0.05)

    async def lose_data(self, how: str) -> None:
        """The history's state is lost (the stores stay usable)."""
        if self.server is None:
            self._memory.clear()  # a new process: every MemoryHistory starts empty
        elif how == "flushall":
            with self.server.client() as client:
                client.flushall()
        else:
            self.server.restart()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def medium(request: pytest.FixtureRequest) -> AsyncIterator[Medium]:
    if request.param == "memory":
        yield Medium("memory")
        return
    require_tool("redis-server")
    server = RedisServer()
    server.start()
    medium = Medium("redis", server)
    try:
        yield medium
    finally:
        for store in medium.stores:
            await store.aclose()
        server.close()


def frame(n: int) -> str:
    return f'{{"type":"m","data":{n},"request_id":null}}'


async def fill(store: HistoryStore, count: int, topic: str = TOPIC) -> list[Position]:
    return [await store.append(topic, frame(n)) for n in range(1, count + 1)]


# -- offsets ------------------------------------------------------------------------------


async def test_offsets_increase_by_one_within_one_epoch(medium: Medium) -> None:
    store = medium.node()
    start = await store.latest(TOPIC)
    assert start.offset == 0
    positions = await fill(store, 25)
    assert [p.offset for p in positions] == list(range(1, 26))
    assert {p.epoch for p in positions} == {start.epoch}
    assert await store.latest(TOPIC) == positions[-1]


async def test_topics_have_their_own_offsets_and_epochs(medium: Medium) -> None:
    store = medium.node()
    await fill(store, 3, "chat:a")
    b = await fill(store, 2, "chat:b")
    assert [p.offset for p in b] == [1, 2]
    assert (await store.latest("chat:a")).offset == 3
    assert (await store.latest("chat:other")).offset == 0


async def test_two_nodes_share_offsets_atomically_under_concurrent_appends(
    medium: Medium,
) -> None:
    nodes = [medium.node(), medium.node()]
    stored: dict[int, str] = {}

    async def publisher(store: HistoryStore, name: str) -> None:
        for i in range(25):
            body = frame(hash((name, i)) % 1_000_000)
            position = await store.append(TOPIC, body)
            assert position.offset not in stored, "offset handed out twice"
            stored[position.offset] = body
            if random.random() < 0.3:
                await asyncio.sleep(0)

    async with asyncio.TaskGroup() as group:
        for n, store in enumerate(nodes):
            for task in range(8):
                group.create_task(publisher(store, f"{n}/{task}"))
    assert sorted(stored) == list(range(1, 401))
    epoch = (await nodes[1].latest(TOPIC)).epoch
    for store in nodes:  # either node serves the whole history, in offset order
        recovery = await store.since(TOPIC, 0, epoch, limit=400)
        assert recovery.recovered
        assert [(e.offset, e.frame) for e in recovery.entries] == sorted(stored.items())


# -- since: what a resubscribing client gets -------------------------------------------------


async def test_since_returns_exactly_the_missed_frames(medium: Medium) -> None:
    store, other_node = medium.node(), medium.node()
    positions = await fill(store, 10)
    epoch = positions[0].epoch
    for offset in (0, 1, 5, 9):
        recovery = await other_node.since(TOPIC, offset, epoch, limit=100)
        assert recovery.recovered
        assert [e.offset for e in recovery.entries] == list(range(offset + 1, 11))
        assert [e.frame for e in recovery.entries] == [frame(n) for n in range(offset + 1, 11)]
        assert recovery.position == Position(10, epoch)
    nothing_missed = await store.since(TOPIC, 10, epoch, limit=1)
    assert nothing_missed.recovered
    assert nothing_missed.entries == ()
    assert nothing_missed.position == Position(10, epoch)


async def test_since_is_all_or_nothing(medium: Medium) -> None:
    store = medium.node()
    positions = await fill(store, 10)
    epoch = positions[0].epoch
    exact = await store.since(TOPIC, 4, epoch, limit=6)
    assert exact.recovered
    assert len(exact.entries) == 6
    too_many = await store.since(TOPIC, 3, epoch, limit=6)
    assert too_many == Recovery((), False, Position(10, epoch))
    other_epoch = await store.since(TOPIC, 4, "0" * 20, limit=100)
    assert not other_epoch.recovered
    assert other_epoch.entries == ()
    assert other_epoch.position == Position(10, epoch)
    ahead = await store.since(TOPIC, 11, epoch, limit=100)
    assert not ahead.recovered
    assert ahead.position == Position(10, epoch)


async def test_trimmed_by_count_is_not_recovered(medium: Medium) -> None:
    store = medium.node(HistoryPolicy(max_messages=10))
    positions = await fill(store, 300)  # Redis trims whole stream nodes: ~10 + one node
    epoch = positions[0].epoch
    assert not (await store.since(TOPIC, 0, epoch, limit=1000)).recovered
    assert not (await store.since(TOPIC, 50, epoch, limit=1000)).recovered
    recent = await store.since(TOPIC, 292, epoch, limit=1000)
    assert recent.recovered
    assert [e.offset for e in recent.entries] == list(range(293, 301))
    page = await store.history(TOPIC, limit=1000)
    assert 10 <= len(page.entries) <= 10 + 100  # exact in memory; ~ in Redis
    assert page.entries[-1].offset == 300


async def test_trimmed_by_age_is_not_recovered_and_offsets_continue(medium: Medium) -> None:
    store = medium.node(HistoryPolicy(max_age=0.3, meta_ttl=3600))
    positions = await fill(store, 5)
    epoch = positions[0].epoch
    assert (await store.since(TOPIC, 2, epoch, limit=10)).recovered

    async def aged() -> bool:
        # The newest entry aged out (so every older one did): appends spread over time
        # under load, and an older one alone can age out first.
        return not (await store.since(TOPIC, 4, epoch, limit=10)).recovered

    await medium.age(1.0, aged)
    assert (await store.since(TOPIC, 5, epoch, limit=10)).recovered  # nothing missed
    assert (await store.history(TOPIC, limit=10)).entries == ()
    after = await store.append(TOPIC, frame(6))
    assert after == Position(6, epoch)  # same epoch: only the messages aged out
    again = await store.since(TOPIC, 5, epoch, limit=10)
    assert [e.offset for e in again.entries] == [6]


async def test_a_topic_quiet_past_meta_ttl_starts_a_new_epoch(medium: Medium) -> None:
    store = medium.node(HistoryPolicy(max_age=0.2, meta_ttl=0.3))
    old = (await fill(store, 3))[-1]
    await medium.quiet(1.0, TOPIC)
    assert not (await store.since(TOPIC, old.offset, old.epoch, limit=10)).recovered
    new = await store.append(TOPIC, frame(1))
    assert new.offset == 1
    assert new.epoch > old.epoch  # epochs of a topic compare in creation order


async def test_data_loss_changes_the_epoch(medium: Medium) -> None:
    losses = ["restart"] if medium.kind == "memory" else ["flushall", "restart"]
    for how in losses:
        before = (await fill(medium.node(), 5))[-1]
        await medium.lose_data(how)
        store = medium.node()
        recovery = await store.since(TOPIC, before.offset, before.epoch, limit=100)
        assert not recovery.recovered, how
        assert recovery.entries == ()
        assert recovery.position.offset == 0
        assert recovery.position.epoch > before.epoch
        assert await store.latest(TOPIC) == recovery.position  # the new epoch sticks
        first = await store.append(TOPIC, frame(1))
        assert first == Position(1, recovery.position.epoch)
        assert not (await store.since(TOPIC, 0, before.epoch, limit=100)).recovered
        await medium.lose_data(how)


# -- history() for HTTP endpoints ------------------------------------------------------------


async def test_history_pages(medium: Medium) -> None:
    store = medium.node()
    positions = await fill(store, 12)
    newest = await store.history(TOPIC, limit=5)
    assert [e.offset for e in newest.entries] == [8, 9, 10, 11, 12]
    assert newest.position == positions[-1]
    first = await store.history(TOPIC, since=0, limit=5)
    assert [e.offset for e in first.entries] == [1, 2, 3, 4, 5]
    second = await store.history(TOPIC, since=first.entries[-1].offset, limit=5)
    assert [e.offset for e in second.entries] == [6, 7, 8, 9, 10]
    assert [e.frame for e in second.entries] == [frame(n) for n in range(6, 11)]
    assert (await store.history(TOPIC, since=12, limit=5)).entries == ()
    assert (await store.history(TOPIC, since=99, limit=5)).entries == ()
    assert (await store.history("chat:empty", limit=5)).entries == ()


async def test_arguments_are_checked_before_any_io(medium: Medium) -> None:
    store = medium.node()
    for bad_topic in ("", "x" * 257):
        with pytest.raises(ValueError, match="topic"):
            await store.append(bad_topic, frame(1))
    with pytest.raises(ValueError, match="offset"):
        await store.since(TOPIC, -1, "e", limit=1)
    with pytest.raises(ValueError, match="offset"):
        await store.since(TOPIC, True, "e", limit=1)
    with pytest.raises(ValueError, match="limit"):
        await store.since(TOPIC, 0, "e", limit=0)
    with pytest.raises(ValueError, match="limit"):
        await store.history(TOPIC, limit=0)
    with pytest.raises(TypeError):
        await store.append(TOPIC, b"bytes")  # type: ignore[arg-type]


async def test_frames_are_kept_byte_for_byte(medium: Medium) -> None:
    store = medium.node()
    body = '{"type":"m","data":"é ✓ \\u0000 \\"q\\" 𝄞","request_id":null}'
    position = await store.append(TOPIC, body)
    recovery = await store.since(TOPIC, 0, position.epoch, limit=1)
    assert [e.frame for e in recovery.entries] == [body]
