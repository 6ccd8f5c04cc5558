"""Attack: subscribe to another user's topic, replay its history, list its presence.

Topics are closed by default. A router whose built-ins can subscribe, or a hub that
keeps presence or history, refuses to be built (or started) without a
``topic_authorizer``; the error names the fix, and ``allow_any_topic`` is the explicit
allow-all. With a real authorizer (own inbox, rooms the user belongs to), mallory's
``subscribe`` to ``inbox:bob`` is refused in band, at connect time (``?topics=``) and
with a resume position (no replay of bob's history), and ``presence.get`` is asked of
the authorizer again, so a user removed from a room can no longer list it. Real
uvicorn, real ``websockets`` clients, history on a real ``redis-server``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tempest_ws import (
    ConfigurationError,
    HistoryPolicy,
    TopicAuthorizer,
    WebSocketConnection,
    WebSocketHub,
    allow_any_topic,
    make_websocket_router,
)
from tempest_ws.testing import serve
from tests.helpers.realtime_support import open_tab, realtime_app
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import echo_handler, make_settings

pytestmark = pytest.mark.e2e

FIX = "topic_authorizer=tempest_ws.allow_any_topic"


def _router(hub: WebSocketHub, **options: object) -> object:
    settings = make_settings()
    return make_websocket_router(
        echo_handler, hub=hub, bearer_resolver=_never, settings=settings, **options
    )


async def _never(token: str) -> None:
    return None


@pytest.mark.parametrize("builtins", [True, {"subscribe"}, ["subscribe", "typing"]])
def test_a_router_whose_builtins_subscribe_needs_an_authorizer(builtins: object) -> None:
    with pytest.raises(ConfigurationError, match="built-in subscribe") as raised:
        _router(WebSocketHub(), builtins=builtins)
    assert FIX in str(raised.value)
    _router(WebSocketHub(), builtins=builtins, topic_authorizer=allow_any_topic)
    _router(WebSocketHub(topic_authorizer=allow_any_topic), builtins=builtins)
    _router(WebSocketHub(), builtins={"typing", "receipt", "unsubscribe"})  # cannot subscribe


@pytest.mark.parametrize(
    "options",
    [{"presence": True}, {"presence": lambda t: True}, {"history_policy": HistoryPolicy()}],
    ids=["presence", "presence-predicate", "history"],
)
async def test_a_hub_with_presence_or_history_needs_an_authorizer(options: dict[str, Any]) -> None:
    hub = WebSocketHub(**options)
    with pytest.raises(ConfigurationError, match="this hub keeps") as raised:
        _router(hub)  # refused when the router is built
    assert FIX in str(raised.value)
    with pytest.raises(ConfigurationError, match="topic_authorizer"):
        await hub.start()  # and when the hub is started without a router
    peer_hub = WebSocketHub(**options)
    connection = peer_hub.create_connection("mallory", send=_discard)
    with pytest.raises(ConfigurationError, match="topic_authorizer"):
        await peer_hub.register(connection)
    open_hub = WebSocketHub(topic_authorizer=allow_any_topic, **options)
    _router(open_hub)
    await open_hub.start()
    await open_hub.stop()


async def _discard(message: object) -> None:
    return None


def own_inbox_or_rooms(rooms: dict[str, set[str]]) -> TopicAuthorizer:
    """The topic authorizer: the user's own inbox and the rooms (``rooms``: topic ->
    member ids, as the app's database would say) the user belongs to."""

    def authorize(connection: WebSocketConnection, topic: str) -> bool:
        if topic == f"inbox:{connection.user_key}":
            return True
        return connection.user_key in rooms.get(topic, ())

    return authorize


async def test_mallory_gets_neither_bobs_inbox_nor_its_history_nor_a_rooms_presence(
    redis: RedisServer,
) -> None:
    rooms = {"room:team": {"alice", "bob", "mallory"}, "room:board": {"alice", "bob"}}
    settings = make_settings(WS_REDIS_URL=redis.url, WS_HISTORY_TOPICS=["inbox:*", "room:*"])
    hub = WebSocketHub.from_settings(
        settings,
        presence=lambda topic: topic.startswith("room:"),
        topic_authorizer=own_inbox_or_rooms(rooms),
    )
    app = realtime_app(settings, hub, builtins=True)
    async with serve(app, settings=settings) as base, open_tab(base, "bob") as bob:
        await bob.request("subscribe", {"topic": "inbox:bob"}, rid="b")
        await bob.request("subscribe", {"topic": "room:board"}, rid="b2")
        for n in range(3):
            await hub.broadcast({"type": "dm", "data": {"n": n}}, topic="inbox:bob")
        await bob.wait(lambda: len(bob.of("dm")) == 3)
        epoch = bob.of("recovery")[0]["epoch"]
        async with open_tab(base, "mallory", topics="inbox:bob,inbox:mallory") as mallory:
            # At connect time: her own inbox only.
            await mallory.wait(lambda: len(mallory.of("ack")) + len(mallory.of("error")) == 2)
            assert [a["topic"] for a in mallory.of("ack")] == ["inbox:mallory"]
            assert [(e["code"], e["topic"]) for e in mallory.of("error")] == [
                ("forbidden", "inbox:bob")
            ]
            # In band, first without then with a resume position: refused, no replay.
            plain = await mallory.request("subscribe", {"topic": "inbox:bob"}, rid="m1")
            resume = {"topic": "inbox:bob", "offset": 0, "epoch": epoch}
            replay = await mallory.request("subscribe", resume, rid="m2")
            for answer in (plain, replay):
                assert answer["type"] == "error"
                assert answer["data"]["code"] == "forbidden"
            # presence of a room she is not in: not answered.
            board = await mallory.request("presence.get", {"topic": "room:board"}, rid="m3")
            assert board["type"] == "error"
            # A room she belongs to, until she is removed from it.
            await mallory.request("subscribe", {"topic": "room:team"}, rid="m4")
            team = await mallory.request("presence.get", {"topic": "room:team"}, rid="m5")
            assert team["data"]["users"] == ["mallory"]
            rooms["room:team"].discard("mallory")
            removed = await mallory.request("presence.get", {"topic": "room:team"}, rid="m6")
            assert removed["data"]["code"] == "forbidden"
            # Nothing of bob's inbox ever reached her (a later marker proves it).
            await hub.broadcast({"type": "dm", "data": {"n": 3}}, topic="inbox:bob")
            await hub.broadcast({"type": "marker", "data": 1}, everyone=True)
            await mallory.wait(lambda: mallory.of("marker") == [1])
            assert mallory.of("dm") == []
            assert all(f.get("topic") != "inbox:bob" for f in mallory.frames)
            # One recovery per topic she joined; replays of two topics run side by side.
            assert sorted(r["topic"] for r in mallory.of("recovery")) == [
                "inbox:mallory",
                "room:team",
            ]
            assert [c.user_key for c in hub.subscribers("inbox:bob")] == ["bob"]
