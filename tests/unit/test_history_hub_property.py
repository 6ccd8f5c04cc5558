"""Hub-level property: two hubs publish concurrently on one topic (shared MemoryHistory,
one in-memory bus that delays and loses packets) while a connection resubscribes with
any stored position. It gets every message after its position exactly once, in order,
then ``recovery{recovered: true}`` after the replay, then the live ones; a connection
that followed from the start gets every message once, in order (lost packets are filled
from the history by the gap task).

Hypothesis draws the traffic (messages per hub, the yields between publishes, which
packets are late or lost), the moment of the resubscription, the position, the hub
it lands on, and how long each read of the history takes. The pure version of this property is ``tests/unit/test_history_seam.py``.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tempest_ws import WebSocketHub, allow_any_topic
from tempest_ws.backplane import InMemoryBackplane
from tempest_ws.history import HistoryPolicy, MemoryHistory, Position
from tests.helpers.history_support import (
    TOPIC,
    ControlledStore,
    LossyBus,
    jitter,
    kinds,
    packet_offset,
    recoveries,
    slow_reads,
)
from tests.helpers.support import connect, until

POLICY = HistoryPolicy(topics=("chat:*",), max_messages=1000)


async def scenario(
    counts: tuple[int, int], seed: int, join_after: int, on_second: bool, fraction: float
) -> tuple[list[str], list[str], dict[str, Any], int, int]:
    rng = random.Random(seed)
    bus = LossyBus()
    store = ControlledStore(MemoryHistory(POLICY))
    store.pause = slow_reads(rng)  # live messages arrive while a replay is read
    hubs = [
        WebSocketHub(
            backplane=InMemoryBackplane(bus),
            history=store,
            history_policy=POLICY,
            history_gap_timeout=0.01,
            topic_authorizer=allow_any_topic,
        )
        for _ in range(2)
    ]
    try:
        follower, follower_peer = await connect(hubs[1], "follower")
        await hubs[1].subscribe(follower.connection_id, TOPIC)
        bus.delay = jitter(rng)
        lost = {n for n in range(1, sum(counts) + 1) if rng.random() < 0.1}
        bus.drop = lambda packet: packet_offset(packet) in lost
        published = asyncio.Event()
        appended = 0

        async def publisher(hub: WebSocketHub, count: int) -> None:
            nonlocal appended
            for n in range(count):
                await hub.broadcast({"type": "msg", "data": n}, topic=TOPIC)
                appended += 1
                if appended >= join_after:
                    published.set()
                await asyncio.sleep(rng.choice((0.0, 0.0, 0.0005, 0.001)))

        joiner_state: dict[str, Any] = {}

        async def joiner() -> None:
            await published.wait()
            latest = await store.latest(TOPIC)
            position = Position(int(latest.offset * fraction), latest.epoch)
            hub = hubs[1] if on_second else hubs[0]
            connection, peer = await connect(hub, "joiner")
            joiner_state.update(peer=peer, position=position)
            await hub.subscribe(connection.connection_id, TOPIC, position=position)

        async with asyncio.timeout(20), asyncio.TaskGroup() as group:
            group.create_task(publisher(hubs[0], counts[0]))
            group.create_task(publisher(hubs[1], counts[1]))
            group.create_task(joiner())
        bus.drop = lambda packet: False
        await hubs[0].broadcast({"type": "msg", "data": "last"}, topic=TOPIC)  # reveals gaps
        final = (await store.latest(TOPIC)).offset
        peers = (follower_peer, joiner_state["peer"])
        await until(lambda: all(str(final) in kinds(p) for p in peers), timeout=10)
        joined = joiner_state["peer"]
        (answer,) = recoveries(joined)
        start = joiner_state["position"].offset
        return kinds(follower_peer), kinds(joined), answer, start, final
    finally:
        for hub in hubs:
            await hub.stop()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    counts=st.tuples(st.integers(1, 25), st.integers(0, 25)),
    seed=st.integers(0, 2**32),
    join_after=st.integers(1, 20),
    on_second=st.booleans(),
    fraction=st.floats(0, 1),
)
def test_resubscribing_during_concurrent_publishing_loses_and_duplicates_nothing(
    counts: tuple[int, int], seed: int, join_after: int, on_second: bool, fraction: float
) -> None:
    follower, joiner, answer, start, final = asyncio.run(
        scenario(counts, seed, min(join_after, sum(counts)), on_second, fraction)
    )
    assert follower == ["recovery", *map(str, range(1, final + 1))]
    # the joiner: the replay (start+1 ... n), recovery, then live (n+1 ... final)
    assert joiner.count("recovery") == 1
    cut = joiner.index("recovery")
    got = [int(k) for k in joiner if k != "recovery"]
    assert got == list(range(start + 1, final + 1))
    assert answer["recovered"] is True
    assert answer["replayed"] == cut
    assert answer["offset"] == start + cut
