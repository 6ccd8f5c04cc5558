"""The hub's realtime options without sockets: topic authorization, ``require_topic``,
topic presence (ref-counted per user across tabs and across hubs sharing a bus), replies.

Connections here write to a `Peer`; two hubs on one
``InMemoryBus`` behave as two processes. "Never delivered" is proven with a later frame
from the same hub: per connection, frames arrive in publish order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tempest_ws import (
    ConfigurationError,
    WebSocketConnection,
    WebSocketHub,
    WSEnvelope,
    allow_any_topic,
)
from tempest_ws.backplane import InMemoryBackplane, InMemoryBus
from tempest_ws.realtime import PRESENCE_JOIN, PRESENCE_LEAVE, error_reply, reply_envelope
from tests.helpers.support import Peer, connect, frames, until

Open = Callable[..., Awaitable[tuple[WebSocketConnection, Peer]]]


def events(peer: Peer, kind: str) -> list[Any]:
    return [f["data"] for f in frames(peer) if f["type"] == kind]


@pytest.fixture
async def hubs() -> AsyncIterator[Callable[..., WebSocketHub]]:
    """Make hubs on one in-memory bus (like processes on one Redis); stopped after."""
    bus = InMemoryBus()
    made: list[WebSocketHub] = []

    def make(**options: Any) -> WebSocketHub:
        options.setdefault("topic_authorizer", allow_any_topic)
        hub = WebSocketHub(backplane=InMemoryBackplane(bus), **options)
        made.append(hub)
        return hub

    yield make
    for hub in made:
        await hub.stop()


async def marker(hub: WebSocketHub, topic: str, name: str, *peers: Peer) -> None:
    """Broadcast a marker on ``topic`` from ``hub``; wait until every peer has it."""
    await hub.broadcast({"type": "marker", "data": name}, topic=topic)
    await until(lambda: all(name in events(p, "marker") for p in peers))


# -- topic authorization ----------------------------------------------------------------


async def test_a_denied_subscription_never_subscribes_and_is_logged(
    hubs: Callable[..., WebSocketHub], caplog: pytest.LogCaptureFixture
) -> None:
    asked: list[tuple[str, str]] = []

    async def only_own_inbox(connection: WebSocketConnection, topic: str) -> bool:
        asked.append((connection.user_key, topic))
        return topic == f"inbox:{connection.user_key}"

    hub = hubs(topic_authorizer=only_own_inbox)
    mallory, mallory_peer = await connect(hub, "mallory")
    alice, alice_peer = await connect(hub, "alice")
    assert await hub.subscribe(alice.connection_id, "inbox:alice")
    assert not await hub.subscribe(mallory.connection_id, "inbox:alice")
    assert await hub.subscribe(mallory.connection_id, "inbox:mallory")
    assert await hub.subscribe(alice.connection_id, "inbox:alice")  # idempotent: not asked again
    assert asked == [
        ("alice", "inbox:alice"),
        ("mallory", "inbox:alice"),
        ("mallory", "inbox:mallory"),
    ]
    assert [c.user_key for c in hub.subscribers("inbox:alice")] == ["alice"]
    assert "inbox:alice" not in mallory.topics

    await hub.broadcast({"type": "secret", "data": 1}, topic="inbox:alice")
    await marker(hub, "inbox:mallory", "after", mallory_peer)
    assert events(mallory_peer, "secret") == []
    assert events(alice_peer, "secret") == [1]
    denied = [r for r in caplog.records if getattr(r, "event", None) == "topic_denied"]
    assert len(denied) == 1
    assert denied[0].connection_id == mallory.connection_id  # type: ignore[attr-defined]
    assert "inbox:alice" in denied[0].getMessage()


@pytest.mark.parametrize(
    "verdict",
    [
        pytest.param(lambda c, t: 1, id="truthy-not-bool"),
        pytest.param(lambda c, t: None, id="none"),
        pytest.param(lambda c, t: 1 / 0, id="raises"),
        pytest.param(lambda c, t: asyncio.sleep(30, result=True), id="too-slow"),
    ],
)
async def test_the_authorizer_fails_closed(
    hubs: Callable[..., WebSocketHub], verdict: Callable[..., Any]
) -> None:
    hub = hubs(topic_authorizer=verdict, authorizer_timeout=0.2)
    connection, _ = await connect(hub, "ann")
    assert not await hub.subscribe(connection.connection_id, "room:1")
    assert hub.subscribers("room:1") == []


async def test_require_topic_refuses_a_global_broadcast_unless_everyone(
    hubs: Callable[..., WebSocketHub],
) -> None:
    hub = hubs(require_topic=True)
    _, peer = await connect(hub, "ann")
    with pytest.raises(ValueError, match="requires a topic"):
        await hub.broadcast({"type": "oops"})
    assert await hub.broadcast({"type": "announcement"}, everyone=True) == 1
    await until(lambda: bool(events(peer, "announcement")))
    assert events(peer, "oops") == []


# -- presence -------------------------------------------------------------------------


async def test_two_tabs_make_one_join_one_tab_closing_nothing_both_one_leave(
    hubs: Callable[..., WebSocketHub],
) -> None:
    a, b = hubs(presence=True), hubs(presence=True)
    observer, seen = await connect(b, "olga")
    await b.subscribe(observer.connection_id, "room")
    tab1, own1 = await connect(a, "alice")
    tab2, own2 = await connect(b, "alice")  # the second tab, on another "process"
    assert await a.subscribe(tab1.connection_id, "room")
    assert await b.subscribe(tab2.connection_id, "room")
    await until(lambda: len(events(seen, PRESENCE_JOIN)) == 1)
    assert events(seen, PRESENCE_JOIN) == [{"topic": "room", "user_id": "alice"}]
    assert await a.presence("room") == await b.presence("room") == {"alice", "olga"}

    await tab1.close()
    carol, _ = await connect(a, "carol")  # a later event from the same hub: a barrier
    await a.subscribe(carol.connection_id, "room")
    await until(lambda: {"topic": "room", "user_id": "carol"} in events(seen, PRESENCE_JOIN))
    assert events(seen, PRESENCE_LEAVE) == []  # alice is still online in another tab
    assert "alice" in await b.presence("room")

    await tab2.close()
    await until(lambda: len(events(seen, PRESENCE_LEAVE)) == 1)
    await marker(b, "room", "end", seen)
    assert events(seen, PRESENCE_LEAVE) == [{"topic": "room", "user_id": "alice"}]
    assert await a.presence("room") == {"olga", "carol"}
    # A user never gets presence events about itself.
    for peer in (own1, own2):
        assert all(e["user_id"] != "alice" for e in events(peer, PRESENCE_JOIN))


async def test_presence_events_reach_only_the_topic_members(
    hubs: Callable[..., WebSocketHub],
) -> None:
    a, b = hubs(presence=True), hubs(presence=True)
    member, member_peer = await connect(a, "mia")
    elsewhere, elsewhere_peer = await connect(b, "eve")
    _, loner_peer = await connect(b, "lou")  # connected, in no topic at all
    await a.subscribe(member.connection_id, "room:x")
    await b.subscribe(elsewhere.connection_id, "room:y")
    joiner, _ = await connect(b, "joe")
    await b.subscribe(joiner.connection_id, "room:x")
    await b.unsubscribe(joiner.connection_id, "room:x")
    await until(lambda: len(events(member_peer, PRESENCE_LEAVE)) == 1)
    assert events(member_peer, PRESENCE_JOIN) == [{"topic": "room:x", "user_id": "joe"}]
    await b.broadcast({"type": "marker", "data": "end"}, everyone=True)
    await until(lambda: events(loner_peer, "marker") == events(elsewhere_peer, "marker") == ["end"])
    for peer in (elsewhere_peer, loner_peer):
        assert events(peer, PRESENCE_JOIN) == events(peer, PRESENCE_LEAVE) == []


async def test_only_the_topics_the_predicate_accepts_keep_presence(
    hubs: Callable[..., WebSocketHub],
) -> None:
    hub = hubs(presence=lambda topic: topic.startswith("room:"))
    watcher, seen = await connect(hub, "wes")
    await hub.subscribe(watcher.connection_id, "inbox:wes")
    await hub.subscribe(watcher.connection_id, "room:1")
    other, _ = await connect(hub, "ota")
    await hub.subscribe(other.connection_id, "inbox:wes")  # no presence: no event
    await hub.subscribe(other.connection_id, "room:1")
    await until(lambda: bool(events(seen, PRESENCE_JOIN)))
    assert events(seen, PRESENCE_JOIN) == [{"topic": "room:1", "user_id": "ota"}]
    assert hub.keeps_presence("room:1")
    assert not hub.keeps_presence("inbox:wes")
    with pytest.raises(ConfigurationError):
        await hub.presence("inbox:wes")


async def test_a_stopping_hub_tells_the_other_hubs_its_users_left(
    hubs: Callable[..., WebSocketHub],
) -> None:
    a, b = hubs(presence=True), hubs(presence=True)
    observer, seen = await connect(b, "olga")
    await b.subscribe(observer.connection_id, "room")
    leaving, _ = await connect(a, "lee")
    await a.subscribe(leaving.connection_id, "room")
    await until(lambda: len(events(seen, PRESENCE_JOIN)) == 1)
    await a.stop()
    await until(lambda: events(seen, PRESENCE_LEAVE) == [{"topic": "room", "user_id": "lee"}])
    assert await b.presence("room") == {"olga"}


async def test_presence_without_the_option_sends_nothing(
    hubs: Callable[..., WebSocketHub],
) -> None:
    hub = hubs()
    first, seen = await connect(hub, "fay")
    await hub.subscribe(first.connection_id, "room")
    second, _ = await connect(hub, "gus")
    await hub.subscribe(second.connection_id, "room")
    await marker(hub, "room", "end", seen)
    assert [f["type"] for f in frames(seen)] == ["marker"]
    assert not hub.keeps_presence("room")


# -- replies --------------------------------------------------------------------------


async def test_reply_keeps_the_request_id_and_takes_models(
    hubs: Callable[..., WebSocketHub],
) -> None:
    hub = hubs()
    connection, peer = await connect(hub, "ann")
    request = WSEnvelope(type="order.get", data={"id": 7}, request_id="r-7")
    assert await hub.reply(connection.connection_id, request, {"status": "paid"})
    assert await hub.reply(connection.connection_id, {"type": "x", "request_id": "r-8"})
    assert await hub.reply_error(connection.connection_id, request, "not_found", "no order 7")
    assert not await hub.reply("gone", request)
    await until(lambda: len(peer.texts()) == 3)
    assert frames(peer) == [
        {"type": "ack", "data": {"status": "paid"}, "request_id": "r-7"},
        {"type": "ack", "data": {}, "request_id": "r-8"},
        {
            "type": "error",
            "data": {"code": "not_found", "message": "no order 7"},
            "request_id": "r-7",
        },
    ]


def test_reply_envelopes_are_pure() -> None:
    from pydantic import BaseModel

    class Paid(BaseModel):
        order_id: int

    request = {"type": "pay", "data": {}, "request_id": "r1"}
    assert reply_envelope(request, Paid(order_id=3), message_type="paid") == WSEnvelope(
        type="paid", data={"order_id": 3}, request_id="r1"
    )
    assert reply_envelope(None).request_id is None
    assert reply_envelope({"type": "x", "request_id": 5}).request_id is None  # not a str
    assert error_reply(request, "c", "m", topic="t").data == {
        "code": "c",
        "message": "m",
        "topic": "t",
    }


async def test_router_installs_its_authorizer_on_the_hub_once() -> None:
    from tempest_ws import make_websocket_router
    from tests.helpers.support import make_settings

    def allow(connection: WebSocketConnection, topic: str) -> bool:
        return True

    settings = make_settings()
    hub = WebSocketHub()

    async def resolver(token: str) -> str | None:
        return None

    async def handler(*args: Any) -> None:
        return None

    make_websocket_router(
        handler, hub=hub, bearer_resolver=resolver, settings=settings, topic_authorizer=allow
    )
    assert hub.topic_authorizer is allow
    with pytest.raises(ConfigurationError, match="another topic_authorizer"):
        make_websocket_router(
            handler,
            hub=hub,
            bearer_resolver=resolver,
            settings=settings,
            topic_authorizer=lambda c, t: True,
        )
    with pytest.raises(ConfigurationError, match="unknown built-in"):
        make_websocket_router(
            handler, hub=hub, bearer_resolver=resolver, settings=settings, builtins={"typo"}
        )
