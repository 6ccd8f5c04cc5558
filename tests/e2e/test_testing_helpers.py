"""``tempest_ws.testing``: the helpers users test their own handlers with.

Each helper is used here the way a user would, against a real uvicorn server on a free
loopback port; the waiting logic of ``expect_envelope`` is also checked against a
scripted socket, so its edge cases need no server and no sleeping.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from tempest_ws import CloseCode, WebSocketHub, WSEnvelope, make_websocket_router
from tempest_ws.settings import WebSocketSettings
from tempest_ws.testing import (
    FakeTokens,
    HubProbe,
    LiveServer,
    expect_close,
    expect_envelope,
    live_client,
    live_server,
)
from tests.helpers.support import Peer, build_app, echo_handler, make_settings, token

pytestmark = pytest.mark.e2e


def fake_token_app(settings: WebSocketSettings) -> tuple[FastAPI, WebSocketHub, FakeTokens]:
    tokens = FakeTokens()
    hub = WebSocketHub.from_settings(settings)
    app = FastAPI()
    app.include_router(
        make_websocket_router(
            echo_handler, hub=hub, bearer_resolver=tokens.resolver, settings=settings
        )
    )
    return app, hub, tokens


@pytest.fixture
async def server() -> AsyncIterator[tuple[LiveServer, WebSocketHub, HubProbe]]:
    settings = make_settings()
    app, hub = build_app(settings)
    with HubProbe(hub) as probe:
        async with live_server(app, settings=settings) as live:
            yield live, hub, probe
    assert hub.stats().connections == 0


# -- tokens ---------------------------------------------------------------------------


async def test_fake_tokens_resolve_until_revoked() -> None:
    tokens = FakeTokens()
    ann, bob = tokens.issue("ann"), tokens.issue("bob")
    assert ann != bob
    assert await tokens.resolver(ann) == "ann"
    tokens.revoke(ann)
    assert await tokens.resolver(ann) is None
    assert await tokens.resolver("made-up") is None
    assert await tokens.resolver(bob) == "bob"


async def test_fake_tokens_drive_a_real_router() -> None:
    settings = make_settings()
    app, _hub, tokens = fake_token_app(settings)
    ann = tokens.issue("ann")
    async with live_server(app, settings=settings) as server:
        async with server.connect(ann) as client:
            assert client.hello is not None
            await client.send_envelope("whoami")
            assert (await client.expect("whoami")).data["user"] == "ann"
        tokens.revoke(ann)
        async with server.connect(ann, wait_hello=False) as refused:
            assert await refused.expect_close() == CloseCode.UNAUTHORIZED


# -- live_client / live_server --------------------------------------------------------


@pytest.mark.parametrize("via", ["subprotocol", "header", "query"])
async def test_live_client_carries_the_token_and_reads_hello(via: Any) -> None:
    settings = make_settings()
    app, hub = build_app(settings)
    async with live_client(app, token("ann"), settings=settings, via=via) as client:
        assert client.ws.subprotocol == ("bearer" if via == "subprotocol" else None)
        assert client.hello is not None
        assert client.hello.data["heartbeat_seconds"] == settings.WS_HEARTBEAT_SECONDS
        assert hub.get(client.connection_id) is not None
        await client.send_envelope("echo", {"n": 1}, request_id="r1")
        echo = await client.expect("echo")
        assert echo.data == {"n": 1}


async def test_a_refused_connection_is_reported_not_hung() -> None:
    settings = make_settings()
    app, _hub = build_app(settings)
    with pytest.raises(AssertionError, match="closed with 4401"):
        async with live_client(app, "not-a-jwt", settings=settings):
            pass  # pragma: no cover - never reached


async def test_several_clients_on_one_server(server: Any) -> None:
    live, hub, _probe = server
    assert live.ws_url("/ws", token="t") == live.base_url.replace("http", "ws") + "/ws?token=t"
    async with live.connect(token("ann")) as ann, live.connect(token("bob")) as bob:
        assert ann.connection_id != bob.connection_id
        assert hub.stats().connections == 2


async def test_expect_close_returns_the_code(server: Any) -> None:
    live, _hub, _probe = server
    async with live.connect(token("ann")) as client:
        await client.send_envelope("close", {"code": 4000})
        assert await expect_close(client.ws) == 4000
    async with live.connect(None, wait_hello=False) as anonymous:
        assert await anonymous.expect_close() == CloseCode.UNAUTHORIZED


async def test_expect_envelope_reports_a_close_with_its_code(server: Any) -> None:
    live, _hub, _probe = server
    async with live.connect(token("ann")) as client:
        await client.send_envelope("close", {"code": 4000})
        with pytest.raises(AssertionError, match=r"closed with 4000 .* before a 'echo'"):
            await expect_envelope(client.ws, "echo")


# -- expect_envelope logic (scripted socket) -------------------------------------------


class ScriptedSocket:
    """Hands out scripted frames, then blocks forever; records what is sent."""

    def __init__(self, *frames: dict[str, Any]) -> None:
        self.frames = [json.dumps(f) for f in frames]
        self.sent: list[dict[str, Any]] = []

    async def recv(self) -> str:
        if self.frames:
            return self.frames.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")  # pragma: no cover

    async def send(self, message: str) -> None:
        self.sent.append(json.loads(message))


PING = {"type": "ping", "data": {}, "request_id": "p1"}


async def test_pings_are_answered_and_skipped() -> None:
    ws = ScriptedSocket(PING, {"type": "news", "data": {"n": 1}})
    assert await expect_envelope(ws, "news") == WSEnvelope(type="news", data={"n": 1})
    assert ws.sent == [{"type": "pong", "data": {}, "request_id": "p1"}]


async def test_pings_can_be_left_unanswered_or_expected() -> None:
    ws = ScriptedSocket(PING, {"type": "news"})
    await expect_envelope(ws, "news", answer_pings=False)
    assert ws.sent == []
    ws = ScriptedSocket(PING)
    assert (await expect_envelope(ws, "ping")).request_id == "p1"


async def test_another_type_fails_unless_skipped() -> None:
    with pytest.raises(AssertionError, match="expected a 'news' envelope, got 'gossip'"):
        await expect_envelope(ScriptedSocket({"type": "gossip"}, {"type": "news"}), "news")
    ws = ScriptedSocket({"type": "gossip"}, {"type": "news"})
    assert (await expect_envelope(ws, "news", skip_others=True)).type == "news"


async def test_silence_fails_after_the_bound() -> None:
    with pytest.raises(AssertionError, match=r"no 'news' envelope within 0\.05 s"):
        await expect_envelope(ScriptedSocket(), "news", timeout=0.05)
    with pytest.raises(AssertionError, match="still open"):
        await expect_close(ScriptedSocket(), timeout=0.05)


async def test_a_frame_that_is_not_an_envelope_fails() -> None:
    ws = ScriptedSocket()
    ws.frames = ["[1, 2]"]
    with pytest.raises(AssertionError, match="not an envelope"):
        await expect_envelope(ws, "news")


# -- HubProbe -------------------------------------------------------------------------


async def test_probe_records_who_got_each_delivery(server: Any) -> None:
    live, hub, probe = server
    async with (
        live.connect(token("ann")) as ann,
        live.connect(token("bob")) as bob,
        live.connect(token("cid")) as cid,
    ):
        for client in (ann, bob):
            await client.send_envelope("subscribe", {"topic": "room"})
            await client.expect("subscribed")
        await cid.send_envelope("publish", {"topic": "room", "payload": {"n": 1}})
        [delivery] = await probe.wait_for("published")
        assert delivery.method == "broadcast"
        assert delivery.arguments["topic"] == "room"
        assert delivery.result == 2
        assert delivery.users == {"ann", "bob"}
        assert delivery.connections == {ann.connection_id, bob.connection_id}
        assert (await bob.expect("published")).data == {"n": 1}

        await hub.send_to("cid", {"type": "notice", "data": {"x": 1}})
        assert await hub.send_to_connection(ann.connection_id, WSEnvelope(type="direct"))
        assert (await cid.expect("notice")).data == {"x": 1}
        assert (await ann.expect("published", skip_others=False)).data == {"n": 1}
        assert (await ann.expect("direct")).data == {}

    assert [d.method for d in probe.deliveries] == ["broadcast", "send_to", "send_to_connection"]
    assert probe.recipients("published") == {"ann", "bob"}
    assert probe.recipients("notice") == {"cid"}
    assert [e.type for e in probe.received(user_id="ann")] == ["published", "direct"]
    assert [e.type for e in probe.received(connection_id=cid.connection_id)] == ["notice"]
    hellos = probe.received(message_type="hello")
    assert len(hellos) == 3
    assert {f.via for f in probe.frames if f.envelope.type == "hello"} == {None}


async def test_probe_records_refused_frames_and_restores_the_hub() -> None:
    hub = WebSocketHub(send_queue_size=1)
    peer = Peer()
    with HubProbe(hub) as probe:
        connection = hub.create_connection("slow", send=peer.send)
        await hub.register(connection)  # no writer started: the queue never drains
        assert await hub.broadcast({"type": "one"}) == 1
        assert await hub.broadcast({"type": "two"}) == 0  # queue full: a slow consumer
        await connection.wait_closed()
    assert [(f.envelope.type, f.queued, f.via) for f in probe.frames] == [
        ("one", True, "broadcast"),
        ("two", False, "broadcast"),
    ]
    assert probe.deliveries[1].users == set()
    assert connection.close_code == CloseCode.TRY_AGAIN_LATER
    assert probe.received(user_id="slow") == [WSEnvelope(type="one")]
    for name in ("broadcast", "send_to", "send_to_connection", "create_connection", "register"):
        assert name not in vars(hub)
    assert "enqueue" not in vars(connection)
    await hub.stop()


async def test_probe_wait_for_fails_after_the_bound() -> None:
    with (
        HubProbe(WebSocketHub()) as probe,
        pytest.raises(AssertionError, match="0 of 1 'never' deliveries"),
    ):
        await probe.wait_for("never", timeout=0.05)


async def test_one_probe_per_hub() -> None:
    hub = WebSocketHub()
    with HubProbe(hub), pytest.raises(RuntimeError, match="already replaced"):
        HubProbe(hub).install()
    assert "broadcast" not in vars(hub)
