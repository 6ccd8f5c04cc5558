"""Attack: flood a history topic with ephemeral events to evict its real messages.

A member of ``room:1`` (history on Redis Streams, ``WS_HISTORY_MAX_MESSAGES`` 1,000)
sends 1,100 ``typing`` frames, inside the default rate-limit burst. Typing indicators,
receipts and presence events are never stored nor stamped, so the history still holds
every message the app broadcast: a member resuming from its last position gets all of
them back with ``recovered: true``. The typing frames still reach the members online.
Real uvicorn, real ``websockets`` clients, a real ``redis-server``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tempest_ws import WebSocketConnection, WebSocketHub
from tempest_ws.testing import serve
from tests.helpers.realtime_support import Tab, open_tab, realtime_app
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import make_settings

pytestmark = pytest.mark.e2e

ROOM = "room:1"
FLOOD = 1_100
MEMBERS = {"alice", "bob", "mallory"}


def room_members(connection: WebSocketConnection, topic: str) -> bool:
    """The topic authorizer: ``room:1`` for its three members, each user's own inbox."""
    if topic == ROOM:
        return connection.user_key in MEMBERS
    return topic == f"inbox:{connection.user_key}"


def stamped(tab: Tab) -> list[dict[str, Any]]:
    """The frames of ``room:1`` that carry a history position, in order."""
    return [f for f in tab.frames if f.get("topic") == ROOM and "offset" in f]


async def test_a_typing_flood_neither_takes_offsets_nor_evicts_real_messages(
    redis: RedisServer,
) -> None:
    settings = make_settings(
        WS_REDIS_URL=redis.url, WS_HISTORY_TOPICS=["room:*"], WS_HISTORY_MAX_MESSAGES=1000
    )
    hub = WebSocketHub.from_settings(settings, presence=True, topic_authorizer=room_members)
    app = realtime_app(settings, hub, builtins=True)
    async with serve(app, settings=settings) as base:
        # bob subscribes once, learns where the room is, and goes offline.
        async with open_tab(base, "bob") as bob:
            await bob.request("subscribe", {"topic": ROOM}, rid="b1")
            await bob.wait(lambda: len(bob.of("recovery")) == 1)
            first = bob.of("recovery")[0]
        async with open_tab(base, "alice") as alice, open_tab(base, "mallory") as mallory:
            for tab in (alice, mallory):
                await tab.request("subscribe", {"topic": ROOM}, rid="s")
            for n in range(5):
                await hub.broadcast({"type": "chat.message", "data": {"n": n}}, topic=ROOM)
            for n in range(FLOOD):
                await mallory.send("typing", {"topic": ROOM, "typing": n % 2 == 0}, f"t{n}")
            await mallory.send("receipt", {"topic": ROOM, "message_id": 1, "status": "read"}, "r")
            await mallory.wait(lambda: mallory.answer("r") is not None)
            # Delivered live all the same (a receipt also reaches the sender's other tabs).
            await alice.wait(lambda: len(alice.of("receipt")) == 1)
            assert len(alice.of("typing")) == FLOOD
            assert mallory.close_code is None
            # Only the app's messages were stamped; typing, receipts, presence never.
            assert [f["data"] for f in stamped(alice)] == [{"n": n} for n in range(5)]
            assert all("offset" not in f for f in alice.frames if f["type"] != "chat.message")
        page = await hub.history(ROOM, limit=1000)
        assert len(page.entries) == 5
        # bob resumes from where he was: every real message comes back, nothing missing.
        async with open_tab(base, "bob") as bob:
            resume = {"topic": ROOM, "offset": first["offset"], "epoch": first["epoch"]}
            await bob.request("subscribe", resume, rid="b2")
            await bob.wait(lambda: len(bob.of("recovery")) == 1)
            recovery = bob.of("recovery")[0]
            assert recovery["recovered"] is True
            assert recovery["replayed"] == 5
            assert [f["data"] for f in stamped(bob)] == [{"n": n} for n in range(5)]
            assert bob.of("typing") == []
