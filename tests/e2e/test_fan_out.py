"""The hub's one-pass fan-out over a real uvicorn (``websockets-sansio``) and a real
``websockets`` client: what it must keep from the per-connection ``enqueue`` path.

- A close frame uvicorn sends on its own (its keepalive timeout, before the hub has
  heard of it) is the last thing on the wire: a broadcast made at that moment, while the
  hub still sees the connection open, writes nothing after it. Its answer to the peer's
  close reaches the hub before that close frame is written (frames are taken as uvicorn
  parses them), and nothing follows it on the wire either.
- ``HubProbe`` still records the frames of the connections it wraps while others,
  registered before it, take the one-pass path; both get every frame, in order.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from fastapi import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tempest_ws import WebSocketConnection, WebSocketHub
from tempest_ws.testing import HubProbe, serve
from tests.helpers.support import build_app, make_settings, token, until, ws_url

pytestmark = pytest.mark.e2e

CLOSE_FRAME = 0x88


class _RecordingTransport:
    """The connection's real transport, every ``write`` recorded before it is made.

    ``on_close`` runs when uvicorn closes the transport, right after writing its own
    close frame and before anything else runs on the loop."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.writes: list[bytes] = []
        self.on_close: Callable[[], None] | None = None

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.real.write(data)

    def close(self) -> None:
        self.real.close()
        callback, self.on_close = self.on_close, None  # once: uvicorn may close twice
        if callback is not None:
            callback()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _record_writes(connection: WebSocketConnection) -> _RecordingTransport:
    """Record the hub's writes and uvicorn's own (its close frame) on one socket."""
    direct = connection._direct
    assert direct is not None, "uvicorn's websockets-sansio protocol gives a direct path"
    recording = _RecordingTransport(direct._transport)
    direct._transport = recording
    direct._protocol.transport = recording
    return recording


async def _idle(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    while True:
        await ws.receive_json()


def _run_at_once(coroutine: Coroutine[Any, Any, int]) -> int:
    """Run a hub delivery to its end without yielding to the loop (it never awaits while
    the hub is started and nothing is deep), so it runs inside a transport callback."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return int(done.value)
    coroutine.close()
    raise AssertionError("the delivery suspended")


async def _open(base: str, hub: WebSocketHub, user: str) -> ClientConnection:
    ws = await connect(ws_url(base), subprotocols=["bearer", token(user)])  # type: ignore[list-item]
    assert json.loads(await ws.recv())["type"] == "hello"
    await until(lambda: bool(hub.connections_of(user)))
    return ws


async def _numbers(ws: ClientConnection, count: int) -> list[int]:
    got: list[int] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            got.append(json.loads(await ws.recv())["data"]["i"])
    return got


def _broadcasts_at_close(hub: WebSocketHub, connection: WebSocketConnection) -> list[str]:
    """Broadcast three frames (the tick's first and two it would hold) the moment uvicorn
    closes the socket's transport; returns the connection state the hub saw then."""
    seen: list[str] = []

    def broadcast_now() -> None:
        seen.append(connection.state.name)
        for i in range(1, 4):
            _run_at_once(hub.broadcast({"type": "n", "data": {"i": i}}))

    recording = _record_writes(connection)
    recording.on_close = broadcast_now
    return seen


async def test_a_broadcast_as_uvicorn_times_the_socket_out_writes_nothing_after() -> None:
    settings = make_settings()
    app, hub = build_app(settings, handler=_idle)
    async with serve(app, settings=settings, ws="websockets-sansio") as base:
        ws = await _open(base, hub, "alice")
        connection = hub.connections_of("alice")[0]
        await hub.broadcast({"type": "n", "data": {"i": 0}})
        assert await _numbers(ws, 1) == [0]
        seen = _broadcasts_at_close(hub, connection)
        recording = connection._direct._transport  # type: ignore[union-attr]
        connection._direct._protocol.keepalive_timeout()  # type: ignore[union-attr]
        await until(lambda: not hub.connections_of("alice"))
        assert seen == ["OPEN"]  # the hub had not heard of the close yet
        assert recording.writes[-1][0] == CLOSE_FRAME  # nothing after it on the wire
        assert all(b'"i":1' not in data for data in recording.writes)
        with pytest.raises(ConnectionClosed):
            await _numbers(ws, 1)
        assert ws.close_code == 1011  # uvicorn's keepalive timeout


async def test_the_peers_close_reaches_the_hub_before_uvicorns_answer_is_written() -> None:
    settings = make_settings()
    app, hub = build_app(settings, handler=_idle)
    async with serve(app, settings=settings, ws="websockets-sansio") as base:
        ws = await _open(base, hub, "alice")
        connection = hub.connections_of("alice")[0]
        seen = _broadcasts_at_close(hub, connection)
        recording = connection._direct._transport  # type: ignore[union-attr]
        await ws.close(4000)
        assert ws.close_code == 4000  # uvicorn echoed the peer's close
        await until(lambda: not hub.connections_of("alice"))
        assert seen, "uvicorn closed the transport"
        assert seen[0] != "OPEN"  # the hub heard of the close first
        assert recording.writes[-1][0] == CLOSE_FRAME
        assert all(b'"i":1' not in data for data in recording.writes)


async def test_a_probe_records_its_connections_while_the_others_take_the_one_pass_path() -> None:
    settings = make_settings()
    app, hub = build_app(settings, handler=_idle)
    async with serve(app, settings=settings, ws="websockets-sansio") as base:
        before = await _open(base, hub, "alice")  # registered before the probe
        with HubProbe(hub) as probe:
            probed = await _open(base, hub, "bob")  # its enqueue is the probe's
            assert "enqueue" in vars(hub.connections_of("bob")[0])
            for i in range(3):
                assert await hub.broadcast({"type": "n", "data": {"i": i}}) == 2
            assert await _numbers(before, 3) == [0, 1, 2]
            assert await _numbers(probed, 3) == [0, 1, 2]
            recorded = [f for f in probe.frames if f.envelope.type == "n"]
            assert [(f.user_id, f.via, f.queued) for f in recorded] == [
                ("bob", "broadcast", True)
            ] * 3
            assert [f.envelope.data["i"] for f in recorded] == [0, 1, 2]
        await probed.close()
        await until(lambda: not hub.connections_of("bob"))
        for i in range(3, 6):  # the probe gone with its connection: one pass for all
            assert await hub.broadcast({"type": "n", "data": {"i": i}}) == 1
        assert await _numbers(before, 3) == [3, 4, 5]
        await before.close()
