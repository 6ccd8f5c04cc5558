"""WebSocketHub delivery and registry semantics in one process."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tempest_ws import CapacityError, CloseCode, WebSocketHub, WSEnvelope
from tempest_ws.wire import envelope as envelope_module
from tests.helpers.support import Peer, connect, until


def received(peer: Peer) -> list[Any]:
    return [json.loads(t)["data"] for t in peer.texts()]


async def settle(*peers_and_counts: tuple[Peer, int]) -> None:
    try:
        await until(lambda: all(len(p.texts()) >= n for p, n in peers_and_counts), 1)
    except TimeoutError:
        raise AssertionError([p.texts() for p, _ in peers_and_counts]) from None


async def test_topic_scoping_and_exclusions() -> None:
    hub = WebSocketHub()
    a, pa = await connect(hub, "alice")
    b, pb = await connect(hub, "bob")
    c, pc = await connect(hub, "carol")
    for connection in (a, b):
        assert await hub.subscribe(connection.connection_id, "room:1")
    assert await hub.subscribe(c.connection_id, "room:2")

    assert await hub.broadcast({"type": "m", "data": 1}, topic="room:1") == 2
    assert (
        await hub.broadcast({"type": "m", "data": 2}, topic="room:1", exclude=a.connection_id) == 1
    )
    assert await hub.broadcast({"type": "m", "data": 3}, exclude_users="carol") == 2
    assert (
        await hub.broadcast({"type": "m", "data": 4}, exclude=[a.connection_id, b.connection_id])
        == 1
    )
    assert await hub.broadcast({"type": "m", "data": 5}, topic="nobody") == 0
    await settle((pa, 2), (pb, 3), (pc, 1))
    assert received(pa) == [1, 3]
    assert received(pb) == [1, 2, 3]
    assert received(pc) == [4]


async def test_send_to_reaches_every_tab_and_only_that_user() -> None:
    hub = WebSocketHub()
    tabs = [await connect(hub, "alice") for _ in range(3)]
    _, other = await connect(hub, "bob")
    assert await hub.send_to("alice", WSEnvelope(type="n", data="hi")) == 3
    for _, peer in tabs:
        await settle((peer, 1))
        assert received(peer) == ["hi"]
    assert other.texts() == []
    assert await hub.send_to("nobody", {"type": "n"}) == 0


async def test_send_to_connection() -> None:
    hub = WebSocketHub()
    a, pa = await connect(hub, "alice")
    _, pb = await connect(hub, "alice")
    assert await hub.send_to_connection(a.connection_id, {"type": "n", "data": "only-a"})
    assert not await hub.send_to_connection("missing", {"type": "n"})
    await settle((pa, 1))
    assert received(pa) == ["only-a"]
    assert pb.texts() == []


async def test_uuid_users_are_keyed_by_string() -> None:
    from uuid import uuid4

    hub = WebSocketHub()
    user = uuid4()
    _, _peer = await connect(hub, user)  # type: ignore[arg-type]
    assert await hub.send_to(str(user), {"type": "n"}) == 1
    assert await hub.send_to(user, {"type": "n"}) == 1
    assert await hub.online_users() == {str(user)}
    assert await hub.is_online(user)


async def test_per_user_cap_evicts_the_oldest_with_4429() -> None:
    hub = WebSocketHub(max_per_user=2)
    first, p1 = await connect(hub, "alice")
    second, _ = await connect(hub, "alice")
    third, _ = await connect(hub, "alice")
    await first.wait_closed()
    assert p1.close_codes() == [CloseCode.TOO_MANY_CONNECTIONS]
    assert [c.connection_id for c in hub.connections_of("alice")] == [
        second.connection_id,
        third.connection_id,
    ]
    assert hub.stats().evicted_over_user_cap == 1


async def test_global_cap_refuses_new_connections() -> None:
    hub = WebSocketHub(max_connections=2)
    await connect(hub, "a")
    await connect(hub, "b")
    with pytest.raises(CapacityError) as info:
        await connect(hub, "c")
    assert info.value.code == CloseCode.TRY_AGAIN_LATER
    assert hub.stats().connections == 2
    assert hub.stats().rejected_at_capacity == 1


async def test_global_cap_counts_evictions_of_the_same_user() -> None:
    hub = WebSocketHub(max_connections=2, max_per_user=1)
    await connect(hub, "a")
    await connect(hub, "b")
    await connect(hub, "b")  # replaces b's first tab: still two connections
    assert hub.stats().connections == 2


async def test_slow_consumer_is_closed_and_others_still_receive() -> None:
    hub = WebSocketHub(send_queue_size=10, close_timeout=0.05)
    slow, slow_peer = await connect(hub, "slow")
    slow_peer.stalled = True
    fast, fast_peer = await connect(hub, "fast")
    for i in range(40):
        await hub.broadcast({"type": "m", "data": i})
        await until(lambda: fast.pending == 0)  # a healthy reader keeps up
    await settle((fast_peer, 40))
    assert received(fast_peer) == list(range(40))
    await slow.wait_closed()
    assert slow.close_code == CloseCode.TRY_AGAIN_LATER
    assert hub.get(slow.connection_id) is None
    assert hub.stats().slow_consumers_closed == 1
    assert hub.stats().connections == 1


async def test_dead_socket_is_removed_on_first_failed_send() -> None:
    hub = WebSocketHub()
    dead, peer = await connect(hub, "ghost")
    await hub.subscribe(dead.connection_id, "t")
    peer.fail_with = ConnectionResetError()
    await hub.broadcast({"type": "m"}, topic="t")
    await dead.wait_closed()
    stats = hub.stats()
    assert (stats.connections, stats.users, stats.topics, stats.subscriptions) == (0, 0, 0, 0)


async def test_unsubscribe_and_registry_cleanup() -> None:
    hub = WebSocketHub()
    a, _ = await connect(hub, "alice")
    await hub.subscribe(a.connection_id, "t1")
    await hub.subscribe(a.connection_id, "t2")
    assert await hub.unsubscribe(a.connection_id, "t1")
    assert not await hub.unsubscribe(a.connection_id, "t1")
    assert [c.connection_id for c in hub.subscribers("t2")] == [a.connection_id]
    assert not await hub.subscribe("missing", "t1")
    with pytest.raises(ValueError, match="topic"):
        await hub.subscribe(a.connection_id, "")
    await a.close()
    assert hub.stats() == hub.stats().__class__(0, 0, 0, 0, 0, 0, 0, 0)


async def test_disconnect_user_closes_every_tab() -> None:
    hub = WebSocketHub()
    tabs = [await connect(hub, "alice") for _ in range(2)]
    _, bob = await connect(hub, "bob")
    assert await hub.disconnect_user("alice") == 2
    for connection, peer in tabs:
        await connection.wait_closed()
        assert peer.close_codes() == [CloseCode.UNAUTHORIZED]
    assert await hub.online_users() == {"bob"}
    assert bob.close_codes() == []


async def test_broadcast_serializes_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    real = envelope_module._dumps

    def counting(value: Any) -> str:
        nonlocal calls
        calls += 1
        return real(value)

    monkeypatch.setattr(envelope_module, "_dumps", counting)
    hub = WebSocketHub()
    for i in range(10):
        await connect(hub, f"u{i}")
    assert await hub.broadcast({"type": "m", "data": "x" * 100}) == 10
    assert calls == 1


async def test_stop_closes_everyone_going_away() -> None:
    hub = WebSocketHub()
    peers = [(await connect(hub, f"u{i}"))[1] for i in range(3)]
    async with hub:
        pass
    assert all(p.close_codes() == [CloseCode.GOING_AWAY] for p in peers)
    assert hub.stats().connections == 0


async def test_a_lone_hub_skips_packets_no_other_node_would_receive() -> None:
    from tempest_ws.backplane import InMemoryBackplane, InMemoryBus

    bus = InMemoryBus()
    sent: list[str] = []
    lone = InMemoryBackplane(bus)
    publish = lone.publish

    async def recording(channel: str, packet: bytes) -> int:
        sent.append(channel)
        return await publish(channel, packet)

    lone.publish = recording  # type: ignore[method-assign]
    a = WebSocketHub(backplane=lone)
    b = WebSocketHub(backplane=InMemoryBackplane(bus))
    await a.start()
    await b.start()
    try:
        local = a.create_connection("ann", send=Peer().send)
        await a.register(local)
        await a.subscribe(local.connection_id, "room")
        await a.broadcast({"type": "n"}, topic="room")
        await a.send_to("ann", {"type": "n"})
        assert sent == []  # only this node listens on topic:room and user:ann
        await a.broadcast({"type": "n"})  # "all": every node listens
        assert sent == ["all"]

        remote_peer = Peer()
        remote = b.create_connection("bob", send=remote_peer.send)
        await b.register(remote)
        remote.start()
        await b.subscribe(remote.connection_id, "room")
        await a.broadcast({"type": "n", "data": 1}, topic="room")
        await a.send_to("bob", {"type": "n", "data": 2})
        assert sent == ["all", "topic:room", "user:bob"]
        await until(lambda: '"data":2' in "".join(remote_peer.texts()))
        assert [json.loads(t)["data"] for t in remote_peer.texts()][-2:] == [1, 2]
    finally:
        await a.stop()
        await b.stop()
