"""The in-memory backplane's own bookkeeping: what each channel and presence entry keeps."""

from __future__ import annotations

from tempest_ws.backplane.base import Member
from tempest_ws.backplane.memory import InMemoryBackplane, InMemoryBus


class Listener:
    def __init__(self) -> None:
        self.packets: list[tuple[str, bytes]] = []

    def on_packet(self, channel: str, packet: bytes) -> None:
        self.packets.append((channel, packet))

    def on_resync(self) -> None:
        pass

    def on_presence_expired(self, topic: str, user: str) -> None:
        pass


async def test_channels_only_one_node_listens_on_share_its_listener_map() -> None:
    bus = InMemoryBus()
    a, b = InMemoryBackplane(bus), InMemoryBackplane(bus)
    await a.start("a", Listener())
    await b.start("b", Listener())
    for channel in ("user:1", "user:2", "user:3"):
        await a.subscribe(channel)
    first = bus.subscribers["user:1"]
    assert bus.subscribers["user:2"] is first
    assert bus.subscribers["user:3"] is first
    await b.subscribe("user:2")  # a copy for user:2; the shared map is left as it was
    assert set(bus.subscribers["user:2"]) == {"a", "b"}
    assert set(first) == {"a"}
    assert bus.subscribers["user:1"] is first
    assert a.reaches_others("user:2")
    assert not a.reaches_others("user:1")
    a.unsubscribe("user:2")
    assert set(bus.subscribers["user:2"]) == {"b"}
    assert set(first) == {"a"}
    await a.stop()  # leaves every channel it was on
    assert set(bus.subscribers) == {"user:2"}
    await b.stop()
    assert bus.subscribers == {}


async def test_presence_keeps_a_user_in_one_flat_tuple_and_forgets_it_when_empty() -> None:
    bus = InMemoryBus()
    a, b = InMemoryBackplane(bus), InMemoryBackplane(bus)
    await a.start("a", Listener())
    await b.start("b", Listener())
    assert await a.presence.join("u", "c1", connected_at=1.0, limit=2) == []
    assert bus.members["u"] == (1.0, "a", "c1")
    assert await b.presence.join("u", "c2", connected_at=2.0, limit=2) == []
    assert await a.presence.join("u", "c3", connected_at=3.0, limit=2) == [Member("a", "c1")]
    assert bus.members["u"] == (2.0, "b", "c2", 3.0, "a", "c3")
    assert await a.presence.is_online("u")
    b.presence.leave("u", "c2")
    a.presence.leave("u", "c2")  # not a's: nothing
    assert bus.members["u"] == (3.0, "a", "c3")
    a.presence.leave("u", "c3")
    assert bus.members == {}
    assert not await a.presence.is_online("u")
    await a.stop()
    await b.stop()
