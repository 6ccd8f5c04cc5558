"""One task per idle connection under uvicorn's websockets-sansio, and the task-based
read loop everywhere else: the same behaviour on both paths, over real sockets."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from fastapi import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tempest_ws import CloseCode, WebSocketConnection, WebSocketHub, allow_any_topic
from tempest_ws.router._feed import DRAIN_TASK_NAME, Feed
from tempest_ws.router._handler_task import HANDLER_TASK_NAME
from tempest_ws.router._session import INBOX_SIZE
from tempest_ws.testing import serve
from tests.helpers.support import build_app, make_settings, token, until, ws_url
from tests.security._servers import WS_PROTOCOLS

pytestmark = pytest.mark.e2e


class Spy:
    """ASGI middleware that keeps the server protocol behind each WebSocket connection
    (the owner of the ASGI ``receive`` callable)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.protocols: list[Any] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            self.protocols.append(receive.__self__)
        await self.app(scope, receive, send)


async def opened(url: str, user: str = "alice") -> ClientConnection:
    ws = await connect(url, subprotocols=["bearer", token(user)])  # type: ignore[list-item]
    hello = json.loads(await ws.recv())
    assert hello["type"] == "hello"
    return ws


async def close_code(ws: ClientConnection) -> int:
    try:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        if closed.rcvd is None:
            raise AssertionError("closed without a close frame") from closed
        return closed.rcvd.code
    raise AssertionError("unreachable")


def named(name: str) -> list[asyncio.Task[Any]]:
    return [task for task in asyncio.all_tasks() if task.get_name() == name]


async def idle(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    while True:
        await ws.receive_json()


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_an_idle_connection_has_no_task_of_its_own_under_sansio_only(ws: str) -> None:
    settings = make_settings()
    app, hub = build_app(settings, handler=idle)
    spy = Spy(app)
    async with serve(spy, settings=settings, ws=ws) as base:
        clients = [await opened(ws_url(base), f"u{i}") for i in range(3)]
        await until(lambda: hub.stats().connections == 3)
        feeds = [p for p in spy.protocols if isinstance(getattr(p, "queue", None), Feed)]
        if ws == "websockets-sansio":
            assert len(feeds) == 3
            assert named(HANDLER_TASK_NAME) == []
        else:  # the fallback: the read loop in the endpoint's task, the handler beside it
            assert feeds == []
            assert len(named(HANDLER_TASK_NAME)) == 3
        assert named(DRAIN_TASK_NAME) == []
        for client in clients:
            await client.close()
        await until(lambda: hub.stats().connections == 0)
    assert all(not isinstance(getattr(p, "queue", None), Feed) for p in spy.protocols)


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_frames_keep_their_order_across_awaited_and_immediate_handling(ws: str) -> None:
    async def slow_authorizer(connection: WebSocketConnection, topic: str) -> bool:
        await asyncio.sleep(0.2)
        return allow_any_topic(connection, topic)

    settings = make_settings()
    app, hub = build_app(settings, builtins=["subscribe"], topic_authorizer=slow_authorizer)
    async with serve(app, settings=settings, ws=ws) as base:
        client = await opened(ws_url(base))
        frames = [
            {"type": "echo", "data": {"n": 1}},
            {"type": "subscribe", "data": {"topic": "room"}, "request_id": "sub"},
            {"type": "echo", "data": {"n": 2}},
            {"type": "ping", "request_id": "p1"},
            {"type": "echo", "data": {"n": 3}},
            {"type": "echo", "data": {"n": 4}},
        ]
        for frame in frames:
            await client.send(json.dumps(frame))
        seen: list[str] = []
        async with asyncio.timeout(10):
            while len(seen) < 6:
                envelope = json.loads(await client.recv())
                if envelope["type"] == "echo":
                    seen.append(f"echo{envelope['data']['n']}")
                elif envelope.get("request_id") == "sub":
                    assert envelope["type"] == "ack"
                    seen.append("ack")
                elif envelope.get("request_id") == "p1":
                    assert envelope["type"] == "pong"
                    seen.append("pong")
        assert [s for s in seen if s.startswith("echo")] == ["echo1", "echo2", "echo3", "echo4"]
        assert seen.index("ack") < seen.index("echo2")  # echo 2 waited for the subscribe
        assert seen.index("ack") < seen.index("pong")
        assert hub.stats().connections == 1  # nothing closed for the wait
        await client.close()
        await until(lambda: hub.stats().connections == 0)


async def test_a_handler_that_stops_reading_pauses_the_socket_and_loses_nothing() -> None:
    count = 3000
    release = asyncio.Event()

    async def stalled(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        await release.wait()
        seen = [(await ws.receive_json())["data"]["n"] for _ in range(count)]
        await ws.send_json({"type": "done", "data": {"in_order": seen == list(range(count))}})
        while True:
            await ws.receive_json()

    settings = make_settings(WS_RATE_LIMIT_MESSAGES=0)
    app, hub = build_app(settings, handler=stalled)
    spy = Spy(app)
    async with serve(spy, settings=settings) as base:
        client = await opened(ws_url(base))
        pad = "x" * 1000

        async def flood() -> None:
            for n in range(count):
                await client.send(json.dumps({"type": "note", "data": {"n": n, "pad": pad}}))

        sending = asyncio.create_task(flood())
        await until(lambda: bool(spy.protocols) and isinstance(spy.protocols[0].queue, Feed))
        feed: Feed = spy.protocols[0].queue
        await until(lambda: feed.paused and feed.channel.backlog == INBOX_SIZE, timeout=20)
        # Read and held: the inbox, plus what came in the last read; the rest waits unread.
        assert feed.channel.backlog + feed.waiting < count
        assert feed.channel.held_by_app  # the heartbeat counts the wait as proof of life
        assert hub.stats().connections == 1
        release.set()
        async with asyncio.timeout(30):
            done = json.loads(await client.recv())
            while done["type"] != "done":
                done = json.loads(await client.recv())
        assert done["data"]["in_order"] is True
        await sending
        await until(lambda: not feed.paused and not feed.busy)
        await client.send(json.dumps({"type": "note", "data": {"n": -1}}))
        assert hub.stats().connections == 1
        await client.close()
        await until(lambda: hub.stats().connections == 0)


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_a_handler_that_ignores_a_server_close_is_cancelled_and_cleanup_runs(
    ws: str,
) -> None:
    started: list[WebSocketConnection] = []
    cancelled: list[bool] = []
    disconnected: list[int | None] = []

    async def deaf(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        started.append(connection)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    def on_disconnect(connection: WebSocketConnection) -> None:
        disconnected.append(connection.close_code)

    settings = make_settings(WS_CLOSE_TIMEOUT_SECONDS=0.3)
    app, hub = build_app(settings, handler=deaf, on_disconnect=on_disconnect)
    async with serve(app, settings=settings, ws=ws) as base:
        client = await opened(ws_url(base))
        await until(lambda: bool(started))
        started[0].close_soon(CloseCode.UNAUTHORIZED, "token expired")
        assert await close_code(client) == CloseCode.UNAUTHORIZED
        await until(lambda: bool(disconnected))
        assert cancelled == [True]
        assert disconnected == [CloseCode.UNAUTHORIZED]
        await until(lambda: hub.stats().connections == 0)
        # The endpoint's task was not left cancelled: the next connection is served.
        started.clear()
        second = await opened(ws_url(base), "bob")
        await until(lambda: bool(started))
        await second.close()
        await until(lambda: len(disconnected) == 2)


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_a_handler_error_closes_1011_and_is_logged(
    ws: str, caplog: pytest.LogCaptureFixture
) -> None:
    disconnected: list[int | None] = []
    settings = make_settings()
    app, hub = build_app(
        settings, on_disconnect=lambda connection: disconnected.append(connection.close_code)
    )
    async with serve(app, settings=settings, ws=ws) as base:
        client = await opened(ws_url(base))
        with caplog.at_level(logging.ERROR, logger="tempest_ws"):
            await client.send(json.dumps({"type": "fail"}))
            assert await close_code(client) == CloseCode.INTERNAL_ERROR
            await until(lambda: bool(disconnected))
        assert disconnected == [CloseCode.INTERNAL_ERROR]
        assert any("handler failed" in r.getMessage() for r in caplog.records)
        await until(lambda: hub.stats().connections == 0)


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_a_handler_that_returns_closes_1000_and_a_client_that_leaves_ends_it(
    ws: str,
) -> None:
    ended: list[str] = []

    async def short(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        message = await ws.receive_json()
        if message["type"] == "bye":
            ended.append("returned")
            return
        try:
            while True:
                await ws.receive_json()
        finally:
            ended.append("left")

    settings = make_settings()
    app, hub = build_app(settings, handler=short)
    async with serve(app, settings=settings, ws=ws) as base:
        first = await opened(ws_url(base))
        await first.send(json.dumps({"type": "bye"}))
        assert await close_code(first) == CloseCode.NORMAL
        second = await opened(ws_url(base), "bob")
        await second.send(json.dumps({"type": "stay"}))
        await second.close()
        await until(lambda: len(ended) == 2 and hub.stats().connections == 0)
        assert ended == ["returned", "left"]
