"""The Python client against the real hub: two uvicorn processes of
``examples/history.py`` on one real redis-server, a ``WebSocketClient`` that resumes.

The client reaches a node through an in-test TCP proxy (``tests/helpers/tcp_proxy.py``) that
plays the load balancer: it can be pointed at the other node, freeze the link or reset
it. Reconnects are held back by a token provider that waits on a gate, so "published
while the client was away" never depends on timing. What is checked:

- its node is SIGKILLed, the balancer moves to the other node: every missed message
  once, in order, then ``recovery{recovered: true}`` (hook called), then live ones;
- a restarted client (a new client object, ``positions=`` from a file, the other node):
  exactly the messages its predecessor had not handled, then ``recovered: true``;
- the network is cut (frozen, then reset): the same guarantees;
- it missed more than the history keeps, or Redis lost everything (``FLUSHALL``,
  while it was away or connected): the hook sees ``recovered: false`` and
  ``client.positions`` moves to the position (and epoch) the server gave.

Every stamped message is yielded as a ``StampedEnvelope``. The nodes and Redis start
once for the module; each test uses its own room.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from examples.history_client import PositionFile, follow
from tempest_ws import WSEnvelope
from tempest_ws.client import Position, StampedEnvelope, WebSocketClient
from tests.e2e.test_client import client_for, until
from tests.e2e.test_client_history import Gate, Recoveries, recorder
from tests.helpers.history_support import Nodes, history_nodes, post
from tests.helpers.scaleout_app import start_all
from tests.helpers.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.redis, pytest.mark.e2e]

MAX_MESSAGES = 10
BOUND = 15.0  # upper bound of any wait; reached only when something is broken


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    workdir = tmp_path_factory.mktemp("history-client-e2e")
    with history_nodes(workdir, max_messages=MAX_MESSAGES) as running:
        yield running


def room() -> tuple[str, str]:
    name = uuid.uuid4().hex[:8]
    return name, f"room:{name}"


async def envelopes(client: WebSocketClient, count: int) -> list[WSEnvelope]:
    """The next ``count`` envelopes the client yields (bounded)."""
    async with asyncio.timeout(BOUND):
        return [await client.receive() for _ in range(count)]


def story(got: list[WSEnvelope]) -> list[str]:
    """``ack``, ``recovery:<recovered>`` or a chat message's number, in order.

    Every chat message must be a ``StampedEnvelope`` of the topic it was published to.
    """
    out = []
    for envelope in got:
        if envelope.type == "recovery":
            out.append(f"recovery:{envelope.data['recovered']}")
        elif envelope.type == "chat.message":
            assert isinstance(envelope, StampedEnvelope), envelope
            assert envelope.topic.startswith("room:")
            out.append(envelope.data["text"])
        else:
            out.append(envelope.type)
    return out


def gated(url: str, gate: Gate, recoveries: Recoveries, **kwargs: object) -> WebSocketClient:
    return client_for(
        url, token=None, token_provider=gate, on_recovery=recorder(recoveries), **kwargs
    )


async def joined(client: WebSocketClient, topic: str) -> str:
    """Subscribe (first time: ``ack``, then ``recovery:False``); return the epoch."""
    await client.subscribe(topic)
    got = await envelopes(client, 2)
    assert story(got) == ["ack", "recovery:False"]
    assert got[0].data == {"type": "subscribe", "topic": topic}
    return str(got[1].data["epoch"])


async def away(client: WebSocketClient, gate: Gate, proxy: TcpProxy) -> None:
    """Reset the client's connection and hold its reconnect until ``gate`` opens."""
    gate.open.clear()
    proxy.cut()
    await until(lambda: not client.connected, "the client to notice the reset")


async def test_a_killed_node_the_client_resumes_on_the_other(nodes: Nodes) -> None:
    a, b = nodes.apps
    name, topic = room()
    gate = Gate()
    recoveries: Recoveries = []
    try:
        async with TcpProxy(a.port) as balancer, gated(balancer.ws, gate, recoveries) as client:
            epoch = await joined(client, topic)
            await post(b, name, 1, 2)
            got = await envelopes(client, 2)
            assert story(got) == ["1", "2"]
            assert [e.position for e in got if isinstance(e, StampedEnvelope)] == [
                Position(1, epoch),
                Position(2, epoch),
            ]

            gate.open.clear()
            assert a.process is not None
            a.process.kill()  # SIGKILL: no close frame, no goodbye
            a.process.wait(timeout=10)
            await until(lambda: not client.connected, "the client to notice the kill")
            await post(b, name, 3, 4, 5, 6, 7)  # missed
            balancer.target = b.port  # the load balancer sends the next connection to B
            gate.open.set()

            got = await envelopes(client, 7)
            assert story(got) == ["ack", "3", "4", "5", "6", "7", "recovery:True"]
            assert got[-1].data == {
                "topic": topic,
                "recovered": True,
                "replayed": 5,
                "offset": 7,
                "epoch": epoch,
            }
            assert recoveries[-1] == (topic, True, got[-1].data)
            assert client.positions == {topic: Position(7, epoch)}
            await post(b, name, 8)
            assert story(await envelopes(client, 1)) == ["8"]
            assert client.positions == {topic: Position(8, epoch)}
        assert [(t, r) for t, r, _ in recoveries] == [(topic, False), (topic, True)]
    finally:
        a.process = None
        start_all([a])  # back for the other tests


async def test_a_restarted_client_resumes_from_stored_positions_on_another_node(
    nodes: Nodes, tmp_path: Path
) -> None:
    """``examples/history_client.py``'s ``follow``, run twice: two client objects."""
    a, b = nodes.apps
    name, topic = room()
    store = PositionFile(tmp_path / "positions.json")
    applied: list[tuple[str, int]] = []
    reloads: list[str] = []
    recoveries: Recoveries = []

    async def apply(envelope: WSEnvelope) -> None:
        assert isinstance(envelope, StampedEnvelope)
        assert envelope.topic == topic
        applied.append((envelope.data["text"], envelope.offset))

    async def reload(topic: str) -> None:
        reloads.append(topic)

    async with client_for(a.ws, positions=store.load()) as first_run:
        run = asyncio.create_task(
            follow(first_run, topic, store=store, apply=apply, reload=reload, limit=2)
        )
        await until(lambda: reloads == [topic], "the first subscribe's recovered: false")
        await post(b, name, 1, 2, 3)  # the first run stops after 2: 3 is not handled
        await asyncio.wait_for(run, BOUND)
    epoch = store.load()[topic].epoch
    assert store.load() == {topic: Position(2, epoch)}
    assert applied == [("1", 1), ("2", 2)]

    await post(a, name, 4, 5)  # while no client runs
    second = client_for(b.ws, positions=store.load(), on_recovery=recorder(recoveries))
    async with second:
        assert second.positions == {topic: Position(2, epoch)}
        await asyncio.wait_for(
            follow(second, topic, store=store, apply=apply, reload=reload, limit=3), BOUND
        )
    assert applied == [(str(n), n) for n in range(1, 6)]
    assert reloads == [topic]  # only the first run's first subscribe
    assert [(t, r, d["replayed"]) for t, r, d in recoveries] == [(topic, True, 3)]
    assert store.load() == {topic: Position(5, epoch)}


async def test_a_network_cut_the_client_resumes(nodes: Nodes) -> None:
    _, b = nodes.apps
    name, topic = room()
    recoveries: Recoveries = []
    async with TcpProxy(b.port) as proxy, gated(proxy.ws, Gate(), recoveries) as client:
        epoch = await joined(client, topic)
        await post(b, name, 1, 2)
        assert story(await envelopes(client, 2)) == ["1", "2"]
        proxy.freeze()
        await post(b, name, 3, 4, 5)  # written by the node, lost on the way
        proxy.cut()  # the client reconnects through the proxy at once
        got = await envelopes(client, 5)
        assert story(got) == ["ack", "3", "4", "5", "recovery:True"]
        assert got[-1].data["replayed"] == 3
        await post(b, name, 6)
        assert story(await envelopes(client, 1)) == ["6"]
        assert client.positions == {topic: Position(6, epoch)}
    assert [(t, r) for t, r, _ in recoveries] == [(topic, False), (topic, True)]


async def test_more_missed_than_the_history_keeps_is_recovered_false(nodes: Nodes) -> None:
    a, b = nodes.apps
    name, topic = room()
    gate = Gate()
    recoveries: Recoveries = []
    async with TcpProxy(a.port) as proxy, gated(proxy.ws, gate, recoveries) as client:
        epoch = await joined(client, topic)
        await post(b, name, 1, 2)
        assert story(await envelopes(client, 2)) == ["1", "2"]
        await away(client, gate, proxy)
        last = 2 + 3 * MAX_MESSAGES
        await post(b, name, *range(3, last + 1))
        gate.open.set()

        got = await envelopes(client, 2)
        assert story(got) == ["ack", "recovery:False"]
        assert got[1].data == {
            "topic": topic,
            "recovered": False,
            "replayed": 0,
            "offset": last,
            "epoch": epoch,
        }
        assert recoveries[-1] == (topic, False, got[1].data)
        assert client.positions == {topic: Position(last, epoch)}
        await post(b, name, last + 1)
        [live] = await envelopes(client, 1)
        assert isinstance(live, StampedEnvelope)
        assert (live.data["text"], live.position) == (str(last + 1), Position(last + 1, epoch))


async def test_redis_data_loss_while_away_is_recovered_false_in_a_new_epoch(
    nodes: Nodes,
) -> None:
    a, b = nodes.apps
    name, topic = room()
    gate = Gate()
    recoveries: Recoveries = []
    async with TcpProxy(a.port) as proxy, gated(proxy.ws, gate, recoveries) as client:
        old = await joined(client, topic)
        await post(b, name, 1, 2)
        assert story(await envelopes(client, 2)) == ["1", "2"]
        await away(client, gate, proxy)
        with nodes.redis.client() as redis:
            redis.flushall()
        await post(b, name, 3, 4)  # offsets 1 and 2 of a new epoch
        gate.open.set()

        got = await envelopes(client, 2)
        assert story(got) == ["ack", "recovery:False"]
        new = got[1].data["epoch"]
        assert (got[1].data["offset"], got[1].data["replayed"]) == (2, 0)
        assert new > old
        assert recoveries[-1] == (topic, False, got[1].data)
        assert client.positions == {topic: Position(2, new)}
        await post(b, name, 5)
        [live] = await envelopes(client, 1)
        assert isinstance(live, StampedEnvelope)
        assert live.position == Position(3, new)
        assert client.positions == {topic: Position(3, new)}


async def test_redis_data_loss_while_connected_is_an_unrequested_recovered_false(
    nodes: Nodes,
) -> None:
    a, b = nodes.apps
    name, topic = room()
    recoveries: Recoveries = []
    async with client_for(a.ws, on_recovery=recorder(recoveries)) as client:
        old = await joined(client, topic)
        await post(b, name, 1, 2)
        assert story(await envelopes(client, 2)) == ["1", "2"]
        with nodes.redis.client() as redis:
            redis.flushall()
        await post(b, name, 3)  # offset 1 of a new epoch, reaching A live

        got = await envelopes(client, 2)
        assert story(got) == ["recovery:False", "3"]
        notice, live = got
        new = notice.data["epoch"]
        assert new > old
        assert notice.request_id is None
        assert (notice.data["offset"], notice.data["replayed"]) == (0, 0)
        assert recoveries[-1] == (topic, False, notice.data)
        assert isinstance(live, StampedEnvelope)
        assert live.position == Position(1, new)
        assert client.positions == {topic: Position(1, new)}
