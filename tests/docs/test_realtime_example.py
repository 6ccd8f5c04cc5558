"""``examples/realtime.py``, imported and driven over real sockets (one process).

Everything ``docs/realtime.md`` shows from it: the page and the dev login, ``?topics=``,
the room policy (rooms open, inboxes private), presence events, typed ``chat.send`` with
its reply, ``invalid_data`` answers, ``on_connect`` refusing banned users with 4403,
``require_topic`` on the hub.
"""

from __future__ import annotations

import logging

import httpx
import pytest

from examples import realtime
from tempest_ws import CloseCode, WebSocketHub
from tempest_ws.realtime import PRESENCE_JOIN
from tempest_ws.testing import serve
from tests.helpers.realtime_support import open_tab
from tests.helpers.support import make_settings

pytestmark = pytest.mark.e2e


async def test_the_realtime_example_end_to_end(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="examples.realtime")
    settings = make_settings()
    app = realtime.create_app(settings)
    hub: WebSocketHub = app.state.hub
    async with serve(app, settings=settings) as base:
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            page = (await http.get("/")).text
            assert 'import { TempestWS } from "/ws/client.js";' in page
            assert (await http.get("/ws/client.js")).status_code == 200
            login = (await http.post("/api/login", json={"name": "ann"})).json()
            assert login["user"] == "ann"
            assert (await http.post("/api/login", json={"name": "banned-joe"})).status_code == 403

        async with open_tab(base, "banned-joe", wait_hello=False) as banned:
            assert await banned.closed() == CloseCode.FORBIDDEN

        async with open_tab(base, "ann", topics="room:lobby") as ann:
            await ann.wait(lambda: bool(ann.of("ack")))
            async with open_tab(base, "bob", topics="room:lobby") as bob:
                await ann.wait(lambda: bool(ann.of(PRESENCE_JOIN)))
                assert ann.of(PRESENCE_JOIN) == [{"topic": "room:lobby", "user_id": "bob"}]
                members = await bob.request("presence.get", {"topic": "room:lobby"}, rid="m")
                assert members["data"]["users"] == ["ann", "bob"]

                sent = await bob.request("chat.send", {"room": "lobby", "text": "hi"}, rid="c1")
                assert sent["type"] == "ack"
                line_id = sent["data"]["id"]
                await ann.wait(lambda: bool(ann.of("chat.message")))
                assert ann.of("chat.message") == [
                    {"id": line_id, "room": "lobby", "sender": "bob", "text": "hi"}
                ]
                await ann.request(
                    "receipt",
                    {"topic": "room:lobby", "message_id": line_id, "status": "read"},
                    rid="r1",
                )
                await bob.wait(lambda: bool(bob.of("receipt")))
                assert bob.of("receipt")[0]["user_id"] == "ann"

                bad = await bob.request("chat.send", {"room": "Not A Room", "text": ""}, rid="c2")
                assert bad["data"]["code"] == "invalid_data"
                away = await bob.request("chat.send", {"room": "kitchen", "text": "x"}, rid="c3")
                assert away["data"] == {"code": "not_subscribed", "message": "join first"}
                inbox = await bob.request("subscribe", {"topic": "inbox:ann"}, rid="s1")
                assert inbox["data"]["code"] == "forbidden"
                own = await bob.request("subscribe", {"topic": "inbox:bob"}, rid="s2")
                assert own["type"] == "ack"
                no_presence = await bob.request("presence.get", {"topic": "inbox:bob"}, rid="p")
                assert no_presence["data"]["code"] == "presence_disabled"

            with pytest.raises(ValueError, match="requires a topic"):
                await hub.broadcast({"type": "everyone"})
    assert "left (close 1000)" in caplog.text  # on_disconnect ran


def test_the_policy_functions() -> None:
    class Conn:
        user_key = "ann"

    conn = Conn()
    assert realtime.may_join(conn, "room:lobby")  # type: ignore[arg-type]
    assert realtime.may_join(conn, "inbox:ann")  # type: ignore[arg-type]
    assert not realtime.may_join(conn, "inbox:bob")  # type: ignore[arg-type]
    assert not realtime.may_join(conn, "room:")  # type: ignore[arg-type]
    assert not realtime.may_join(conn, "admin:x")  # type: ignore[arg-type]
    assert realtime.room_presence("room:x")
    assert not realtime.room_presence("inbox:ann")
