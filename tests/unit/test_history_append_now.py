"""``MemoryHistory.append_now`` and the hub's publishing path that uses it: a publish on
a history topic of a lone in-memory hub awaits nothing. No sockets."""

from __future__ import annotations

import pytest

from tempest_ws import WebSocketHub, allow_any_topic
from tempest_ws.history import HistoryPolicy, MemoryHistory, Position
from tests.helpers.support import connect, frames, until

POLICY = HistoryPolicy(topics=("chat:*",), max_messages=3, max_age=10, meta_ttl=100)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_append_now_is_append_without_a_coroutine() -> None:
    clock = Clock()
    now_store, awaited_store = (
        MemoryHistory(POLICY, clock=clock),
        MemoryHistory(POLICY, clock=clock),
    )
    for n in range(5):
        position = now_store.append_now("chat:1", f'{{"n":{n}}}')
        assert position.offset == (await awaited_store.append("chat:1", f'{{"n":{n}}}')).offset
        assert position == Position(n + 1, position.epoch)
    for store in (now_store, awaited_store):  # the count bound: the newest three
        page = await store.history("chat:1", limit=10)
        assert [(e.offset, e.frame) for e in page.entries] == [
            (o, f'{{"n":{o - 1}}}') for o in (3, 4, 5)
        ]
    clock.now += 11  # the age bound: all of them are too old now
    assert now_store.append_now("chat:1", '{"n":5}').offset == 6
    assert [e.offset for e in (await now_store.history("chat:1", limit=10)).entries] == [6]
    epoch = (await now_store.latest("chat:1")).epoch
    clock.now += 101  # quiet past meta_ttl: forgotten, the next message starts an epoch
    assert now_store.append_now("chat:2", "{}").offset == 1
    renewed = now_store.append_now("chat:1", "{}")
    assert renewed.offset == 1
    assert renewed.epoch > epoch


async def test_append_now_forgets_the_least_recently_used_topics_only() -> None:
    clock = Clock()
    store = MemoryHistory(POLICY, clock=clock)
    first = {topic: store.append_now(topic, "{}").epoch for topic in ("chat:a", "chat:b")}
    clock.now += 50
    store.append_now("chat:a", "{}")  # a is used again: b is now the least recent
    store.append_now("chat:a", "{}")
    clock.now += 70  # b has been quiet for 120 s, a for 70 s
    store.append_now("chat:c", "{}")
    assert (await store.latest("chat:a")) == Position(3, first["chat:a"])
    renewed = await store.latest("chat:b")
    assert renewed.offset == 0
    assert renewed.epoch != first["chat:b"]
    clock.now += 200  # everything lapsed, the most recent topic too
    again = store.append_now("chat:c", "{}")
    assert again.offset == 1
    assert store.append_now("chat:c", "{}") == Position(2, again.epoch)


async def test_append_now_checks_its_arguments() -> None:
    store = MemoryHistory(POLICY)
    with pytest.raises(ValueError, match="topic"):
        store.append_now("", "{}")
    with pytest.raises(ValueError, match="topic"):
        store.append_now("x" * 257, "{}")
    with pytest.raises(TypeError, match="str"):
        store.append_now("chat:1", b"{}")  # type: ignore[arg-type]
    assert (await store.latest("chat:1")).offset == 0


async def test_a_lone_in_memory_hub_stamps_in_order_and_counts() -> None:
    hub = WebSocketHub(history_policy=POLICY, topic_authorizer=allow_any_topic)
    try:
        connection, peer = await connect(hub, "ann")
        assert await hub.subscribe(connection.connection_id, "chat:1")
        for n in range(5):
            assert await hub.broadcast({"type": "msg", "data": n}, topic="chat:1") == 1
        await until(lambda: len([f for f in frames(peer) if f["type"] == "msg"]) == 5)
        got = [f for f in frames(peer) if f["type"] == "msg"]
        assert [(f["data"], f["offset"], f["topic"]) for f in got] == [
            (n, n + 1, "chat:1") for n in range(5)
        ]
        assert hub.history_stats().appends == 5
    finally:
        await hub.stop()


async def test_a_store_that_changes_append_is_called_through_append() -> None:
    """A ``MemoryHistory`` subclass overriding ``append`` (to count, to fail) is used
    through its ``append``: the hub never bypasses it with ``append_now``."""

    class Counting(MemoryHistory):
        def __init__(self) -> None:
            super().__init__(POLICY)
            self.calls = 0

        async def append(self, topic: str, frame: str) -> Position:
            self.calls += 1
            return await super().append(topic, frame)

    store = Counting()
    hub = WebSocketHub(history=store, topic_authorizer=allow_any_topic)
    try:
        connection, _ = await connect(hub, "ann")
        assert await hub.subscribe(connection.connection_id, "chat:1")
        for n in range(3):
            await hub.broadcast({"type": "msg", "data": n}, topic="chat:1")
        assert store.calls == 3
    finally:
        await hub.stop()
