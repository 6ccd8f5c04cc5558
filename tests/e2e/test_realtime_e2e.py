"""Realtime features over real sockets: a real uvicorn on a loopback port, real clients.

Topic authorization (built-in ``subscribe`` and ``?topics=``), presence events, typing
and receipts, ``presence.get``, typed messages with automatic ``invalid_data`` answers,
request/reply, and the lifecycle hooks. "Never received" is proven with a later marker
from the same hub (per connection, frames arrive in publish order).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import WebSocket
from pydantic import BaseModel, Field

from tempest_ws import CloseCode, MessageRegistry, WebSocketConnection, WebSocketHub
from tempest_ws.realtime import PRESENCE_JOIN, PRESENCE_LEAVE, receive_envelope
from tempest_ws.testing import serve
from tests.helpers.realtime_support import Tab, open_tab, realtime_app, rooms_and_own_inbox
from tests.helpers.support import make_settings, until

pytestmark = pytest.mark.e2e


@pytest.fixture
async def server() -> AsyncIterator[tuple[str, WebSocketHub]]:
    """Built-ins on, rooms and own inboxes allowed, presence for rooms."""
    settings = make_settings()
    hub = WebSocketHub(presence=lambda topic: topic.startswith("room:"))
    app = realtime_app(settings, hub, builtins=True, topic_authorizer=rooms_and_own_inbox)
    async with serve(app, settings=settings) as base:
        yield base, hub


async def everyone_marker(hub: WebSocketHub, name: str, *tabs: Tab) -> None:
    await hub.broadcast({"type": "marker", "data": name}, everyone=True)
    for tab in tabs:
        await tab.wait(lambda tab=tab: name in tab.of("marker"))  # type: ignore[misc]


# -- authorization ----------------------------------------------------------------------


async def test_a_denied_subscribe_never_receives_that_topic(
    server: tuple[str, WebSocketHub], caplog: pytest.LogCaptureFixture
) -> None:
    base, hub = server
    async with (
        open_tab(base, "alice") as alice,
        open_tab(base, "mallory", topics="inbox:alice,inbox:mallory") as mallory,
    ):
        # At connect time: the allowed topic is acked, the other refused (no request_id).
        await mallory.wait(lambda: len(mallory.of("ack")) + len(mallory.of("error")) == 2)
        assert mallory.of("ack") == [{"type": "subscribe", "topic": "inbox:mallory"}]
        assert mallory.of("error") == [
            {
                "code": "forbidden",
                "message": "subscription to this topic is not allowed",
                "topic": "inbox:alice",
            }
        ]
        # In band: the error carries the request_id it answers.
        denied = await mallory.request("subscribe", {"topic": "inbox:alice"}, rid="r1")
        assert denied["type"] == "error"
        assert denied["data"]["code"] == "forbidden"
        assert (await alice.request("subscribe", {"topic": "inbox:alice"}, rid="a1")) == {
            "type": "ack",
            "data": {"type": "subscribe", "topic": "inbox:alice"},
            "request_id": "a1",
        }
        assert [c.user_key for c in hub.subscribers("inbox:alice")] == ["alice"]

        await hub.broadcast({"type": "secret", "data": "for alice"}, topic="inbox:alice")
        await hub.broadcast({"type": "marker", "data": "end"}, topic="inbox:mallory")
        await mallory.wait(lambda: "end" in mallory.of("marker"))
        await alice.wait(lambda: bool(alice.of("secret")))
        assert mallory.of("secret") == []
        assert "seen" not in mallory.types()  # the handler never saw a built-in
    denials = [r for r in caplog.records if getattr(r, "event", None) == "topic_denied"]
    assert len(denials) == 2
    assert all("inbox:alice" in r.getMessage() for r in denials)


# -- presence ---------------------------------------------------------------------------


async def test_presence_events_reach_only_the_topic_members(
    server: tuple[str, WebSocketHub],
) -> None:
    base, hub = server
    async with (
        open_tab(base, "mia", topics="room:a") as member,
        open_tab(base, "eve", topics="room:b") as elsewhere,
        open_tab(base, "lou") as loner,
    ):
        await member.wait(lambda: bool(member.of("ack")))
        await elsewhere.wait(lambda: bool(elsewhere.of("ack")))
        async with open_tab(base, "joe") as joe:
            await joe.request("subscribe", {"topic": "room:a"}, rid="j1")
            await member.wait(lambda: bool(member.of(PRESENCE_JOIN)))
            await joe.request("unsubscribe", {"topic": "room:a"}, rid="j2")
            await member.wait(lambda: bool(member.of(PRESENCE_LEAVE)))
        assert member.of(PRESENCE_JOIN) == [{"topic": "room:a", "user_id": "joe"}]
        assert member.of(PRESENCE_LEAVE) == [{"topic": "room:a", "user_id": "joe"}]
        await everyone_marker(hub, "end", elsewhere, loner)
        for tab in (elsewhere, loner):
            assert tab.of(PRESENCE_JOIN) == tab.of(PRESENCE_LEAVE) == []


async def test_two_tabs_one_join_one_tab_closing_nothing_both_closing_one_leave(
    server: tuple[str, WebSocketHub],
) -> None:
    base, hub = server
    async with open_tab(base, "olga", topics="room:r") as observer:
        await observer.wait(lambda: bool(observer.of("ack")))
        async with open_tab(base, "alice", topics="room:r") as tab1:
            async with open_tab(base, "alice", topics="room:r") as tab2:
                await tab2.wait(lambda: bool(tab2.of("ack")))
                await observer.wait(lambda: bool(observer.of(PRESENCE_JOIN)))
                assert await hub.is_online("alice")
            # tab2 closed; a later join from the same hub is the barrier
            async with open_tab(base, "carl", topics="room:r"):
                await observer.wait(lambda: len(observer.of(PRESENCE_JOIN)) == 2)
                assert observer.of(PRESENCE_LEAVE) == []  # alice still has tab1
                assert "alice" in await hub.presence("room:r")
                assert tab1.of(PRESENCE_JOIN) == [{"topic": "room:r", "user_id": "carl"}]
        await observer.wait(lambda: len(observer.of(PRESENCE_LEAVE)) == 2)
        await everyone_marker(hub, "end", observer)
        assert observer.of(PRESENCE_JOIN) == [
            {"topic": "room:r", "user_id": "alice"},
            {"topic": "room:r", "user_id": "carl"},
        ]
        assert sorted(e["user_id"] for e in observer.of(PRESENCE_LEAVE)) == ["alice", "carl"]
        assert not await hub.is_online("alice")
        assert await hub.presence("room:r") == {"olga"}


async def test_presence_get_lists_the_members_of_a_topic_the_caller_is_in(
    server: tuple[str, WebSocketHub],
) -> None:
    base, _ = server
    async with (
        open_tab(base, "ann", topics="room:p,inbox:ann") as ann,
        open_tab(base, "bob", topics="room:p") as bob,
        open_tab(base, "bob", topics="room:p"),
        open_tab(base, "cy") as outsider,
    ):
        await bob.wait(lambda: bool(bob.of("ack")))
        await ann.wait(lambda: len(ann.of("ack")) == 2)
        answer = await ann.request("presence.get", {"topic": "room:p"}, rid="p1")
        assert answer == {
            "type": "ack",
            "data": {"type": "presence.get", "topic": "room:p", "users": ["ann", "bob"]},
            "request_id": "p1",
        }
        refused = await outsider.request("presence.get", {"topic": "room:p"}, rid="p2")
        assert refused["data"]["code"] == "not_subscribed"
        untracked = await ann.request("presence.get", {"topic": "inbox:ann"}, rid="p3")
        assert untracked["data"]["code"] == "presence_disabled"


# -- typing and receipts ----------------------------------------------------------------


async def test_typing_and_receipts_reach_the_other_members_not_the_sender(
    server: tuple[str, WebSocketHub],
) -> None:
    base, hub = server
    async with (
        open_tab(base, "alice", topics="room:t") as alice1,
        open_tab(base, "alice", topics="room:t") as alice2,
        open_tab(base, "bob", topics="room:t") as bob,
        open_tab(base, "carol", topics="room:other") as carol,
    ):
        for tab in (alice1, alice2, bob, carol):
            await tab.wait(lambda tab=tab: bool(tab.of("ack")))  # type: ignore[misc]
        ack = await alice1.request("typing", {"topic": "room:t", "typing": True}, rid="t1")
        assert ack == {
            "type": "ack",
            "data": {"type": "typing", "topic": "room:t"},
            "request_id": "t1",
        }
        await bob.wait(lambda: bool(bob.of("typing")))
        assert bob.of("typing") == [{"topic": "room:t", "user_id": "alice", "typing": True}]

        receipt = {"topic": "room:t", "message_id": "m-42", "status": "read"}
        await bob.request("receipt", receipt, rid="r1")
        relayed = {**receipt, "user_id": "bob"}
        for tab in (alice1, alice2):  # both of alice's tabs learn it was read
            await tab.wait(lambda tab=tab: bool(tab.of("receipt")))  # type: ignore[misc]
            assert tab.of("receipt") == [relayed]

        await everyone_marker(hub, "end", alice1, alice2, bob, carol)
        assert alice1.of("typing") == alice2.of("typing") == []  # never to the sender
        assert bob.of("receipt") == []
        assert carol.of("typing") == carol.of("receipt") == []

        outside = await carol.request("typing", {"topic": "room:t"}, rid="t2")
        assert outside["data"]["code"] == "not_subscribed"


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("subscribe", None),
        ("subscribe", []),
        ("subscribe", {"topic": 3}),
        ("subscribe", {"topic": ""}),
        ("subscribe", {"topic": "x" * 257}),
        ("typing", {"topic": "room:t", "typing": "yes"}),
        ("receipt", {"topic": "room:t", "message_id": 2**70, "status": "read"}),
        ("receipt", {"topic": "room:t", "message_id": "m", "status": "READ!"}),
        ("presence.get", {"room": "room:t"}),
    ],
)
async def test_malformed_builtins_get_invalid_data_with_their_request_id(
    server: tuple[str, WebSocketHub], kind: str, data: Any
) -> None:
    base, _ = server
    async with open_tab(base, "ann") as ann:
        raw: dict[str, Any] = {"type": kind, "request_id": "bad"}
        if data is not None:
            raw["data"] = data
        await ann.ws.send(json.dumps(raw))
        await ann.wait(lambda: ann.answer("bad") is not None)
        answer = ann.answer("bad")
        assert answer is not None
        assert answer["type"] == "error"
        assert answer["data"]["code"] == "invalid_data"
        # still served: the next request is answered (not_subscribed), nothing closed
        still = await ann.request("presence.get", {"topic": "room:t"}, rid="alive")
        assert still["data"]["code"] == "not_subscribed"
        assert ann.close_code is None


# -- typed messages and request/reply ---------------------------------------------------

typed = MessageRegistry()


@typed.inbound("order.get")
class OrderGet(BaseModel):
    id: int = Field(ge=1)


async def order_handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    while True:
        incoming = await receive_envelope(ws)
        assert isinstance(incoming.message, OrderGet)  # validated before the handler
        await hub.reply(connection.connection_id, incoming.envelope, {"id": incoming.message.id})


async def test_typed_messages_reach_the_handler_validated_and_bad_ones_are_answered() -> None:
    settings = make_settings()
    hub = WebSocketHub(topic_authorizer=rooms_and_own_inbox)
    app = realtime_app(
        settings,
        hub,
        handler=order_handler,
        messages=typed,
        builtins={"subscribe"},
        max_invalid_frames=4,
    )
    async with serve(app, settings=settings) as base, open_tab(base, "ann") as ann:
        assert await ann.request("order.get", {"id": 7}, rid="o1") == {
            "type": "ack",
            "data": {"id": 7},
            "request_id": "o1",
        }
        invalid = await ann.request("order.get", {"id": "seven"}, rid="o2")
        assert invalid["type"] == "error"
        assert invalid["data"] == {
            "code": "invalid_data",
            "message": "invalid data: data.id: int_parsing",
        }
        unknown = await ann.request("order.delete", {"id": 7}, rid="o3")
        assert unknown["data"]["code"] == "unknown_type"
        typing_off = await ann.request("typing", {"topic": "t"}, rid="o4")  # not enabled
        assert typing_off["data"]["code"] == "unknown_type"
        await ann.send("order.get", {"id": 0}, "o5")  # the fourth invalid frame
        assert await ann.closed() == CloseCode.POLICY_VIOLATION


# -- lifecycle hooks ----------------------------------------------------------------------


async def test_on_connect_can_refuse_and_every_on_disconnect_hook_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings()
    hub = WebSocketHub()
    ended: list[tuple[str, int | None, Any]] = []

    def on_connect(connection: WebSocketConnection, ws: WebSocket) -> int | None:
        if connection.user_key == "banned":
            return CloseCode.FORBIDDEN
        connection.metadata["agent"] = ws.headers.get("user-agent", "")
        return None

    async def broken(connection: WebSocketConnection) -> None:
        raise RuntimeError("hook bug on purpose")

    def record(connection: WebSocketConnection) -> None:
        ended.append((connection.user_key, connection.close_code, connection.metadata.get("agent")))

    app = realtime_app(settings, hub, on_connect=on_connect, on_disconnect=[broken, record])
    async with serve(app, settings=settings) as base:
        async with open_tab(base, "banned", wait_hello=False) as refused:
            assert await refused.closed() == CloseCode.FORBIDDEN
            assert refused.of("hello") == []
        async with open_tab(base, "ann") as ann:
            assert ann.of("hello")
        await until(lambda: len(ended) == 1, 10)
    assert ended[0][0] == "ann"
    assert ended[0][1] == CloseCode.NORMAL
    assert "websockets" in ended[0][2].lower()  # what on_connect stored in metadata
    assert "on_disconnect hook failed" in caplog.text
    refusals = [r for r in caplog.records if getattr(r, "event", None) == "connect_refused"]
    assert len(refusals) == 1
    assert hub.stats().connections == 0


def test_hook_codes_are_checked() -> None:
    from tempest_ws.router._hooks import _sendable

    assert all(_sendable(c) for c in (1000, 1008, 1011, 1013, 3000, 4403, 4999))
    assert not any(_sendable(c) for c in (999, 1004, 1005, 1006, 1015, 2000, 5000))


# -- the documented envelopes are the real ones --------------------------------------------

DOC = (Path(__file__).resolve().parents[2] / "docs" / "realtime.md").read_text("utf-8")


def compact(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


async def test_the_envelopes_quoted_in_the_docs_are_the_ones_sent(
    server: tuple[str, WebSocketHub],
) -> None:
    base, _ = server
    quoted: list[str] = []

    async def say(tab: Tab, frame: str) -> None:
        assert frame in DOC, frame
        await tab.ws.send(frame)

    async def answer(tab: Tab, rid: str) -> None:
        await tab.wait(lambda: tab.answer(rid) is not None)
        quoted.append(compact(tab.answer(rid) or {}))

    async def event(tab: Tab, kind: str) -> None:
        await tab.wait(lambda: bool(tab.of(kind)))
        quoted.append(compact(next(f for f in tab.frames if f["type"] == kind)))

    async with open_tab(base, "alice", topics="room:lobby,inbox:bob") as alice:
        await alice.wait(lambda: len(alice.frames) == 3)  # hello, then both answers
        quoted.extend(compact(f) for f in alice.frames[1:])
        async with open_tab(base, "bob") as bob:
            await say(bob, '{"type":"subscribe","data":{"topic":"room:lobby"},"request_id":"r1"}')
            await answer(bob, "r1")
            await event(alice, PRESENCE_JOIN)
            await alice.send("subscribe", {"topic": "inbox:bob"}, "r2")
            await answer(alice, "r2")
            await say(
                alice, '{"type":"presence.get","data":{"topic":"room:lobby"},"request_id":"r3"}'
            )
            await answer(alice, "r3")
            typing = (
                '{"type":"typing","data":{"topic":"room:lobby","typing":true},"request_id":"r4"}'
            )
            await say(alice, typing)
            await answer(alice, "r4")
            await event(bob, "typing")
            await say(
                bob,
                '{"type":"receipt","data":{"topic":"room:lobby","message_id":"m-42","status":"read"},"request_id":"r5"}',
            )
            await answer(bob, "r5")
            await event(alice, "receipt")
            await say(bob, '{"type":"unsubscribe","data":{"topic":"room:lobby"},"request_id":"r6"}')
            await answer(bob, "r6")
            await event(alice, PRESENCE_LEAVE)
            await bob.send("typing", {"topic": "room:lobby", "typing": True}, "r7")
            await answer(bob, "r7")
            await bob.send("subscribe", {"topic": 42}, "r8")
            await answer(bob, "r8")
    assert len(quoted) == 14
    missing = [frame for frame in quoted if frame not in DOC]
    assert missing == []
