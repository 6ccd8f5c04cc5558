"""One contract, every backplane: the same test bodies run on InMemoryBackplane (nodes on
one bus) and on RedisBackplane (nodes on a real redis-server)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tempest_ws import WebSocketHub
from tempest_ws.backplane import InMemoryBackplane, InMemoryBus, Member, Presence
from tempest_ws.backplane.packet import (
    OP_ALL,
    OP_KICK,
    OP_TOPIC,
    Packet,
    connection_node,
    decode_packet,
    encode_packet,
    own_prefix,
    positioned_head,
)
from tests.helpers.backplane_nodes import NodeFactory, nodes_on
from tests.helpers.support import Peer, until, until_async


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def start_node(request: pytest.FixtureRequest) -> AsyncIterator[NodeFactory]:
    async with nodes_on(request.param) as start:
        yield start


async def test_packets_reach_subscribers_only_bytes_intact_in_order(
    start_node: NodeFactory,
) -> None:
    a, b = await start_node(), await start_node()
    assert a.backplane.connected
    assert b.backplane.connected
    await a.backplane.subscribe("topic:t")
    packet = b'{"v":1}\n\xff\x00 binary-safe \n'
    assert await b.backplane.publish("topic:t", packet) == 1
    await until(lambda: len(a.listener.packets) == 1)
    assert a.listener.packets == [("topic:t", packet)]
    assert b.listener.packets == []

    await b.backplane.subscribe("topic:t")  # counted; its own packets may come back or not
    for i in range(50):
        assert await b.backplane.publish("topic:t", str(i).encode()) == 2
    await until(lambda: len(a.listener.on("topic:t")) == 51)
    assert a.listener.on("topic:t")[1:] == [str(i).encode() for i in range(50)]
    assert b.listener.on("topic:t") in ([], [str(i).encode() for i in range(50)])


async def test_unsubscribe_stops_delivery(start_node: NodeFactory) -> None:
    a, b = await start_node(), await start_node()
    await a.backplane.subscribe("topic:gone")
    a.backplane.unsubscribe("topic:gone")
    # Commands apply in call order: once this later subscription is confirmed, the
    # unsubscription is in effect too.
    await a.backplane.subscribe("topic:marker")
    assert await b.backplane.publish("topic:gone", b"late") == 0
    assert await b.backplane.publish("topic:marker", b"after") == 1
    await until(lambda: a.listener.on("topic:marker") == [b"after"])
    assert a.listener.on("topic:gone") == []


async def test_presence_cap_evicts_the_oldest_wherever_it_lives(start_node: NodeFactory) -> None:
    a, b = await start_node(), await start_node()
    pa, pb = a.backplane.presence, b.backplane.presence
    assert await pa.join("u", "c1", connected_at=1.0, limit=2) == []
    assert await pb.join("u", "c2", connected_at=2.0, limit=2) == []
    assert await pa.join("u", "c3", connected_at=3.0, limit=2) == [Member(a.node_id, "c1")]
    pa.leave("u", "c1")  # what the hub does when it closes the evicted connection
    assert await pa.join("u", "c4", connected_at=4.0, limit=2) == [Member(b.node_id, "c2")]
    pb.leave("u", "c2")
    assert await pb.join("w", "c5", connected_at=5.0, limit=2) == []
    assert await pa.online_users() == {"u", "w"}
    assert await pb.is_online("u")
    assert not await pb.is_online("nobody")

    pa.leave("u", "c3")
    pa.leave("u", "c4")
    await until_async(lambda: _offline(pb, "u"))
    assert await pb.online_users() == {"w"}
    assert await pa.join("u", "c6", connected_at=6.0, limit=2) == []  # cap counts live ones


async def test_a_stopped_node_leaves_presence(start_node: NodeFactory) -> None:
    a, b = await start_node(), await start_node()
    assert await b.backplane.presence.join("v", "c1", connected_at=1.0, limit=5) == []
    assert await a.backplane.presence.is_online("v")
    await b.backplane.stop()
    assert not b.backplane.connected
    await until_async(lambda: _offline(a.backplane.presence, "v"))
    assert await a.backplane.presence.online_users() == set()


async def _offline(presence: Presence, user: str) -> bool:
    return not await presence.is_online(user)


# -- the packet format (pure) -----------------------------------------------------------


def test_packets_round_trip_and_carry_the_frame_untouched() -> None:
    frame = '{"type":"m","data":"é\\n\u2028 line"}'
    packet = encode_packet(
        "0123456789ab", OP_TOPIC, 'ro"om\n', frame, exclude=["c1"], exclude_users=["u1"]
    )
    assert packet.endswith(frame.encode())
    decoded = decode_packet(packet)
    assert decoded == Packet(
        "0123456789ab", OP_TOPIC, 'ro"om\n', frame, frozenset({"c1"}), frozenset({"u1"})
    )
    kick = decode_packet(encode_packet("0123456789ab", OP_KICK, "u", code=4401, reason="r"))
    assert (kick.frame, kick.code, kick.reason) == (None, 4401, "r")


def test_every_packet_of_a_node_starts_with_its_own_prefix() -> None:
    """A node drops its echoed packets by this prefix: every shape of packet it builds
    starts with it, and no other node's does."""
    node, other, frame = "0123456789ab", "0123456789ac", '{"type":"m","data":1}'
    head = positioned_head(node, OP_TOPIC, "chat:1", exclude=["c1"], trace={"tp": "x"})
    packets = [
        encode_packet(node, OP_ALL, "", frame),
        encode_packet(node, OP_TOPIC, 'ro"om', frame, exclude=["c1"], exclude_users=["u"]),
        encode_packet(node, OP_KICK, "u", code=4401, reason="r"),
        encode_packet(node, OP_TOPIC, "chat:1", frame, position=(3, "e1"), trace={"a": "b"}),
        encode_packet(node, OP_TOPIC, "chat:1", frame, position=(3, "e1")),
        f'{head}3,"e1"]}}\n{frame}'.encode(),
        f'{positioned_head(node, OP_TOPIC, "chat:1")}3,"e1"]}}\n{frame}'.encode(),
    ]
    for packet in packets:
        assert packet.startswith(own_prefix(node)), packet
        assert not packet.startswith(own_prefix(other)), packet
        assert decode_packet(packet).node == node


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b'{"v":2,"n":"x","o":"all"}',
        b'{"v":1,"n":"x","o":"drop-tables"}',
        b'{"v":1,"n":3,"o":"all"}',
        b'{"v":1,"n":"x","o":"all","t":"","x":"abc"}',
        b'{"v":1,"n":"x","o":"all","t":"","c":"4401"}',
        b'{"v":1,"n":"x","o":"all","t":""}\n\xff\xfe',
        b"[]",
    ],
)
def test_malformed_packets_are_refused(raw: bytes) -> None:
    with pytest.raises(ValueError, match=r"packet|Expecting|decode"):
        decode_packet(raw)


def test_connection_ids_name_their_node() -> None:
    assert connection_node("0123456789ab.9f3c") == "0123456789ab"
    assert connection_node("9f3c0123456789ab9f3c0123456789ab") is None
    assert connection_node("not-a-node.x") is None


async def test_a_hub_drops_its_own_and_malformed_packets(caplog: pytest.LogCaptureFixture) -> None:
    bus = InMemoryBus()
    hub = WebSocketHub(backplane=InMemoryBackplane(bus))
    peer = Peer()
    connection = hub.create_connection("ann", send=peer.send)
    await hub.register(connection)
    connection.start()
    frame = '{"type":"n","data":1,"request_id":null}'
    hub._node.on_packet("all", encode_packet(hub.node_id, OP_ALL, "", frame))
    hub._node.on_packet("all", b"garbage")
    hub._node.on_packet("all", encode_packet("aaaaaaaaaaaa", OP_ALL, "", frame))
    # The own packet is dropped at once, before the foreign one is queued: had it been
    # delivered, it would be written first.
    await until(lambda: len(peer.texts()) >= 1)
    assert peer.texts() == [frame]
    assert "malformed packet" in caplog.text
    assert hub.cluster_stats().packets_received == 1
    await hub.stop()
