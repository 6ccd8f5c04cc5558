"""The hub's parts on their own, without sockets: each is built with its collaborators."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tempest_ws import CapacityError, CloseCode, ConfigurationError, TopicLimitError
from tempest_ws.backplane.memory import InMemoryBackplane
from tempest_ws.backplane.packet import OP_TOPIC, OP_USER, Packet, encode_packet
from tempest_ws.history import HistoryPolicy, MemoryHistory, Position
from tempest_ws.hub._authz import TopicGate, allow_any_topic
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._delivery import Delivery
from tempest_ws.hub._flow import SendBudget
from tempest_ws.hub._hub import WebSocketHub
from tempest_ws.hub._membership import Membership
from tempest_ws.hub._messaging import HubMessaging
from tempest_ws.hub._node import Node
from tempest_ws.hub._presence import TopicPresence
from tempest_ws.hub._registry import Registry
from tempest_ws.hub.history._mend import Mender
from tempest_ws.hub.history._release import Release
from tempest_ws.hub.history._sequence import Sequencing
from tempest_ws.hub.history._topic import TopicState
from tests.helpers.support import Peer, until

NODE = "0123456789ab"
OTHER = "ba9876543210"


@dataclass
class Parts:
    """One hub's parts, built in the hub's order, with the callbacks recorded."""

    registry: Registry
    node: Node
    presence: TopicPresence
    gate: TopicGate
    membership: Membership
    delivery: Delivery
    announced: list[tuple[str, str, str]] = field(default_factory=list)
    peers: dict[str, Peer] = field(default_factory=dict)

    async def connect(self, user: str) -> WebSocketConnection:
        peer = Peer()
        cid = f"{NODE}.{user}{len(self.peers)}"
        connection = WebSocketConnection(user, send=peer.send, connection_id=cid)
        self.peers[connection.connection_id] = peer
        await self.membership.add(connection)
        connection.start()
        return connection

    def frames(self, connection: WebSocketConnection) -> list[Any]:
        return [json.loads(t) for t in self.peers[connection.connection_id].texts()]


def build(
    *,
    authorizer: Any = None,
    presence: bool = False,
    max_per_user: int = 5,
    max_connections: int = 10,
    max_topics: int = 4,
    require_topic: bool = False,
) -> Parts:
    announced: list[tuple[str, str, str]] = []

    async def announce(kind: str, topic: str, user: str) -> None:
        announced.append((kind, topic, user))

    registry = Registry()
    backplane = InMemoryBackplane()
    presence_part = TopicPresence(backplane, announce, presence)
    budget = SendBudget(max_bytes=1 << 20, max_frames=64, stall_timeout=5.0, producer_wait=0)
    node = Node(NODE, backplane, registry, presence_expired=presence_part.expired, budget=budget)
    gate = TopicGate(authorizer, 1.0)
    membership = Membership(
        registry,
        node,
        presence_part,
        None,
        gate,
        max_per_user=max_per_user,
        max_connections=max_connections,
        max_topics=max_topics,
    )
    delivery = Delivery(node, None, budget, None, require_topic=require_topic)
    return Parts(registry, node, presence_part, gate, membership, delivery, announced)


@pytest.fixture
async def parts() -> AsyncIterator[Parts]:
    built = build(authorizer=allow_any_topic)
    yield built
    await built.node.stop()


# -- TopicGate -----------------------------------------------------------------------


async def test_gate_without_an_authorizer_admits_and_with_one_asks_it() -> None:
    connection = WebSocketConnection("ann", send=Peer().send)
    assert await TopicGate(None, 1.0).admits(connection, "any")
    asked: list[str] = []

    async def only_rooms(_: WebSocketConnection, topic: str) -> bool:
        asked.append(topic)
        return topic.startswith("room:")

    gate = TopicGate(only_rooms, 1.0)
    assert await gate.admits(connection, "room:1")
    assert not await gate.admits(connection, "inbox:bob")
    assert asked == ["room:1", "inbox:bob"]


async def test_gate_denies_what_is_not_exactly_true() -> None:
    connection = WebSocketConnection("ann", send=Peer().send)

    def broken(_: WebSocketConnection, topic: str) -> bool:
        raise RuntimeError(topic)

    def truthy(_: WebSocketConnection, topic: str) -> Any:
        return 1

    async def silent(_: WebSocketConnection, topic: str) -> bool:
        await asyncio.Event().wait()
        return True

    assert not await TopicGate(broken, 1.0).admits(connection, "t")
    assert not await TopicGate(truthy, 1.0).admits(connection, "t")
    assert not await TopicGate(silent, 0.01).admits(connection, "t")


async def test_the_hub_reads_and_sets_its_gate() -> None:
    hub = WebSocketHub(presence=True)
    connection = hub.create_connection("ann", send=Peer().send)
    assert hub.topic_authorizer is None
    assert hub.presence_enabled
    with pytest.raises(ConfigurationError):
        hub.check_authorizer()
    hub.topic_authorizer = allow_any_topic
    hub.check_authorizer()
    assert await hub.authorize(connection, "room:1")
    hub.require_topic = True
    with pytest.raises(ValueError, match="requires a topic"):
        await hub.broadcast({"type": "m"})
    await hub.stop()


# -- Membership ------------------------------------------------------------------------


async def test_membership_refuses_past_max_connections_and_counts_it() -> None:
    parts = build(max_connections=2)
    await parts.connect("ann")
    await parts.connect("bob")
    with pytest.raises(CapacityError):
        await parts.connect("cat")
    assert parts.membership.rejected == 1
    assert sorted(parts.registry.users) == ["ann", "bob"]
    await parts.node.stop()


async def test_membership_evicts_the_oldest_tab_past_the_user_cap() -> None:
    parts = build(max_per_user=2)
    first = await parts.connect("ann")
    await parts.connect("ann")
    await parts.connect("ann")
    await until(lambda: first.close_code is not None)
    assert first.close_code == CloseCode.TOO_MANY_CONNECTIONS
    assert parts.membership.evicted == 1
    await parts.node.stop()


async def test_membership_join_asks_the_gate_and_keeps_the_channel(parts: Parts) -> None:
    ann = await parts.connect("ann")
    assert not await parts.membership.join("gone", "room:1", None, None, None)
    with pytest.raises(ValueError, match="non-empty"):
        await parts.membership.join(ann.connection_id, "", None, None, None)
    parts.gate.authorizer = lambda connection, topic: topic != "secret"
    assert not await parts.membership.join(ann.connection_id, "secret", None, None, None)
    assert await parts.membership.join(ann.connection_id, "room:1", None, None, '{"type":"ok"}')
    assert "topic:room:1" in parts.node.channels
    assert parts.membership.subscribers("room:1") == [ann]
    await until(lambda: len(parts.frames(ann)) == 1)
    assert parts.frames(ann) == [{"type": "ok"}]
    assert parts.membership.leave(ann.connection_id, "room:1")
    assert not parts.membership.leave(ann.connection_id, "room:1")
    assert "topic:room:1" not in parts.node.channels


async def test_membership_topic_cap_raises_and_subscribes_nothing() -> None:
    parts = build(authorizer=allow_any_topic, max_topics=2)
    ann = await parts.connect("ann")
    for topic in ("a", "b"):
        assert await parts.membership.join(ann.connection_id, topic, None, None, None)
    with pytest.raises(TopicLimitError):
        await parts.membership.join(ann.connection_id, "c", None, None, None)
    assert ann.topics == {"a", "b"}
    await parts.node.stop()


async def test_membership_discard_leaves_everything_once(parts: Parts) -> None:
    ann = await parts.connect("ann")
    await parts.membership.join(ann.connection_id, "room:1", None, None, None)
    parts.membership.discard(ann)
    parts.membership.discard(ann)
    assert parts.registry.connections == {}
    assert parts.registry.topics == {}
    assert parts.node.channels == {"all", f"node:{NODE}"}


async def test_membership_presence_goes_through_the_announce_callback() -> None:
    parts = build(authorizer=allow_any_topic, presence=True)
    ann = await parts.connect("ann")
    assert parts.membership.presence_enabled
    assert parts.membership.keeps_presence("room:1")
    await parts.membership.join(ann.connection_id, "room:1", None, None, None)
    assert parts.announced == [("presence.join", "room:1", "ann")]
    assert await parts.membership.topic_members("room:1") == {"ann"}
    await parts.node.stop()


def test_membership_needs_an_authorizer_with_presence() -> None:
    with pytest.raises(ConfigurationError, match="topic_authorizer"):
        build(presence=True).membership.check_authorizer()
    build(authorizer=allow_any_topic, presence=True).membership.check_authorizer()
    build().membership.check_authorizer()  # neither presence nor history


# -- Delivery --------------------------------------------------------------------------


async def test_delivery_broadcast_counts_local_recipients_minus_exclusions(parts: Parts) -> None:
    ann, bob = await parts.connect("ann"), await parts.connect("bob")
    for connection in (ann, bob):
        await parts.membership.join(connection.connection_id, "room:1", None, None, None)
    envelope = {"type": "m", "data": 1}
    assert await parts.delivery.broadcast(envelope, "room:1", None, None, False, False) == 2
    assert await parts.delivery.broadcast(envelope, "room:1", None, "ann", False, False) == 1
    assert (
        await parts.delivery.broadcast(envelope, None, ann.connection_id, None, False, False) == 1
    )
    await until(lambda: len(parts.frames(bob)) == 3)
    assert len(parts.frames(ann)) == 1


async def test_delivery_requires_a_topic_when_told_to() -> None:
    parts = build(require_topic=True)
    await parts.connect("ann")
    with pytest.raises(ValueError, match="requires a topic"):
        await parts.delivery.broadcast({"type": "m"}, None, None, None, False, False)
    assert await parts.delivery.broadcast({"type": "m"}, None, None, None, True, False) == 1
    parts.delivery.require_topic = False
    assert await parts.delivery.broadcast({"type": "m"}, None, None, None, False, False) == 1
    await parts.node.stop()


async def test_delivery_targets_and_kicks(parts: Parts) -> None:
    ann, ann2, bob = [await parts.connect(u) for u in ("ann", "ann", "bob")]
    assert await parts.delivery.send_to("ann", {"type": "n"}) == 2
    assert await parts.delivery.send_to_connection(bob.connection_id, {"type": "n"})
    assert not await parts.delivery.send_to_connection(f"{NODE}.gone", {"type": "n"})
    assert not await parts.delivery.send_to_connection("no-node-in-this-id", {"type": "n"})
    assert await parts.delivery.disconnect_user("ann", CloseCode.UNAUTHORIZED, "revoked") == 2
    await until(lambda: ann.close_code is not None and ann2.close_code is not None)
    assert bob.close_code is None


async def test_delivery_announces_presence_to_the_others_only(parts: Parts) -> None:
    ann, bob = await parts.connect("ann"), await parts.connect("bob")
    for connection in (ann, bob):
        await parts.membership.join(connection.connection_id, "room:1", None, None, None)
    await parts.delivery.announce("presence.join", "room:1", "ann")
    await until(lambda: len(parts.frames(bob)) == 1)
    assert parts.frames(bob)[0]["data"] == {"topic": "room:1", "user_id": "ann"}
    assert parts.frames(ann) == []


# -- HubMessaging on its own -----------------------------------------------------------


async def test_hub_messaging_stands_alone_without_history(parts: Parts) -> None:
    messaging = HubMessaging(parts.delivery, parts.membership, None)
    ann = await parts.connect("ann")
    assert await messaging.subscribe(ann.connection_id, "room:1")
    assert messaging.subscribers("room:1") == [ann]
    assert await messaging.broadcast({"type": "m"}, topic="room:1") == 1
    assert not messaging.keeps_history("room:1")
    assert messaging.history_stats().appends == 0
    with pytest.raises(ValueError, match="no history"):
        await messaging.history("room:1")
    assert await messaging.unsubscribe(ann.connection_id, "room:1")


# -- Node ------------------------------------------------------------------------------


def test_node_hands_positioned_packets_to_its_sequenced_callback() -> None:
    seen: list[Packet] = []

    def sequenced(packet: Packet) -> int:
        seen.append(packet)
        return 7

    node = Node(NODE, InMemoryBackplane(), Registry(), sequenced=sequenced)
    frame = '{"type":"m"}'
    node.on_packet("topic:t", encode_packet(OTHER, OP_TOPIC, "t", frame, position=(3, "e")))
    node.on_packet("topic:t", encode_packet(OTHER, OP_TOPIC, "t", frame))  # no position
    node.on_packet("topic:t", encode_packet(NODE, OP_TOPIC, "t", frame, position=(4, "e")))
    assert [p.position for p in seen] == [(3, "e")]
    assert node.packets_in == 2
    assert node.backpressure() is None  # no budget given


# -- the history's parts ---------------------------------------------------------------


@dataclass
class Following:
    registry: Registry
    release: Release
    mender: Mender
    sequencing: Sequencing
    topics: dict[str, TopicState]
    wanted: list[str]


def following(clock: list[float]) -> Following:
    policy = HistoryPolicy(topics=("chat:*",), max_messages=50)
    store = MemoryHistory(policy)
    registry = Registry()
    topics: dict[str, TopicState] = {}
    wanted: list[str] = []

    async def want(channel: str) -> None:
        wanted.append(channel)

    release = Release(registry)
    mender = Mender(store, policy, topics, release, gap_timeout=30, clock=lambda: clock[0])
    sequencing = Sequencing(store, topics, registry, want, release, mender)
    return Following(registry, release, mender, sequencing, topics, wanted)


async def test_sequencing_holds_behind_a_gap_and_releases_in_order() -> None:
    parts = following([100.0])
    peer = Peer()
    ann = WebSocketConnection("ann", send=peer.send)
    parts.registry.add(ann)
    parts.registry.subscribe(ann, "chat:1")
    ann.start()
    parts.sequencing.follow("chat:1")
    await parts.sequencing.ready("chat:1")
    assert parts.wanted == ["topic:chat:1"]
    state = parts.topics["chat:1"]
    epoch = state.last.epoch if state.last is not None else ""
    none: frozenset[str] = frozenset()
    assert parts.sequencing.arrive("chat:1", Position(2, epoch), "two", none, none) == 0
    assert parts.mender.gapped == {"chat:1"}
    assert state.gap == (1, 100.0)
    assert parts.sequencing.arrive("chat:1", Position(1, epoch), "one", none, none) == 1
    assert parts.mender.gapped == set()
    await until(lambda: len(peer.texts()) == 2)
    assert peer.texts() == ["one", "two"]
    parts.sequencing.left("chat:1", ann.connection_id, last=True)
    assert parts.topics == {}
    assert parts.mender.task is not None
    parts.mender.task.cancel()


async def test_sequencing_fans_out_a_topic_it_does_not_follow() -> None:
    parts = following([0.0])
    peer = Peer()
    ann = WebSocketConnection("ann", send=peer.send)
    parts.registry.add(ann)
    parts.registry.subscribe(ann, "chat:1")
    none: frozenset[str] = frozenset()
    assert parts.sequencing.arrive("chat:1", Position(9, "e"), "nine", none, none) == 1
    assert parts.sequencing.arrive("chat:1", Position(9, "e"), "x", none, frozenset({"ann"})) == 0


async def test_release_notice_tells_the_subscribers_to_reload() -> None:
    parts = following([0.0])
    peer = Peer()
    ann = WebSocketConnection("ann", send=peer.send)
    parts.registry.add(ann)
    parts.registry.subscribe(ann, "chat:1")
    state = TopicState("chat:1")
    parts.release.notice(state, Position(5, "e"))
    assert parts.release.notices == 1
    assert ann.pending == 1


# -- what an idle connection keeps -----------------------------------------------------


async def test_registry_keeps_a_users_connections_oldest_first_a_lone_one_as_is() -> None:
    registry = Registry()
    peer = Peer()
    a, b = (WebSocketConnection("ann", send=peer.send) for _ in range(2))
    assert registry.add(a)
    assert not registry.add(b)
    assert not registry.add(b)  # added once
    assert registry.users["ann"] == (a, b)
    assert list(registry.select(OP_USER, "ann")) == [a, b]
    assert registry.remove(a) == []
    assert registry.users["ann"] is b  # one connection: kept as it is, no tuple
    assert registry.tabs("ann") == (b,)
    assert registry.remove(b) == ["user:ann"]
    assert registry.users == {}
    assert registry.tabs("ann") == ()
    assert registry.remove(b) is None


async def test_a_connection_gets_a_topic_set_with_its_first_subscription(parts: Parts) -> None:
    ann = await parts.connect("ann")
    assert ann._topics is None  # never subscribed: no set
    assert ann.topics == set()
    bob = await parts.connect("bob")
    await parts.membership.join(bob.connection_id, "room:1", None, None, None)
    assert bob.topics == {"room:1"}
    assert parts.membership.subscribers("room:1") == [bob]


async def test_unregistering_removes_the_users_presence_and_channel(parts: Parts) -> None:
    backplane = parts.node.backplane
    assert isinstance(backplane, InMemoryBackplane)
    bus = backplane.bus
    ann = await parts.connect("ann")
    bob = await parts.connect("bob")
    assert set(bus.members) == {"ann", "bob"}
    assert {"user:ann", "user:bob"} <= set(bus.subscribers)
    parts.membership.discard(ann)
    assert set(bus.members) == {"bob"}
    assert "user:ann" not in bus.subscribers
    assert await parts.membership.online_users() == {"bob"}
    parts.membership.discard(bob)
    assert bus.members == {}
    assert "user:bob" not in bus.subscribers
