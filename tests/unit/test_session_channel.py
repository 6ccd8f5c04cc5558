"""The session's channel without a server: closes interrupt waits, nothing is left behind."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tempest_ws._types import Message
from tempest_ws.codes import CloseCode
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.router._heartbeat import HeartbeatWheel
from tempest_ws.router._session import INBOX_SIZE, PONG_FRAME, HandlerChannel, SessionLimits

LIMITS = SessionLimits(
    max_message_bytes=1024,
    accept_binary=False,
    max_invalid_frames=3,
    heartbeat_seconds=30.0,
    heartbeat_timeout=60.0,
)


class FakeServer:
    """The ASGI side: a queue of inbound messages and a list of what was sent."""

    def __init__(self) -> None:
        self.inbound: asyncio.Queue[Message] = asyncio.Queue()
        self.sent: list[Message] = []

    async def receive(self) -> Message:
        return await self.inbound.get()

    async def send(self, message: Message) -> None:
        self.sent.append(message)


def make_session() -> tuple[FakeServer, HandlerChannel, WebSocketConnection, Any]:
    server = FakeServer()
    channel = HandlerChannel(server.receive, server.send)
    connection = WebSocketConnection("u1", send=server.send)
    channel.attach(connection)
    wheel: HeartbeatWheel[HandlerChannel] = HeartbeatWheel(
        interval=30.0, timeout=60.0, on_ping=lambda _: None, on_timeout=lambda _: None
    )
    return server, channel, connection, wheel.add(channel)


async def test_a_close_ends_the_read_loop_parked_in_receive_and_leaves_its_task_clean() -> None:
    server, channel, connection, beat = make_session()
    reader = asyncio.create_task(channel.read_loop(connection, beat, LIMITS))
    server.inbound.put_nowait({"type": "websocket.receive", "text": PONG_FRAME})
    server.inbound.put_nowait({"type": "websocket.receive", "text": '{"type":"chat"}'})
    message = await asyncio.wait_for(channel.receive(), 5)
    assert message["text"] == '{"type":"chat"}'  # the pong was swallowed
    connection.close_soon(CloseCode.GOING_AWAY, "bye")
    await asyncio.wait_for(reader, 5)  # returned, not cancelled
    assert not reader.cancelled()
    assert reader.cancelling() == 0
    assert (await channel.receive())["type"] == "websocket.disconnect"
    beat.stop()
    await connection.wait_closed()


async def test_a_cancel_from_outside_still_cancels_the_read_loop() -> None:
    _, channel, connection, beat = make_session()
    reader = asyncio.create_task(channel.read_loop(connection, beat, LIMITS))
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    beat.stop()


async def test_a_cancelled_receiver_does_not_starve_a_concurrent_one() -> None:
    _, channel, _conn, beat = make_session()
    first = asyncio.create_task(channel.receive())
    second = asyncio.create_task(channel.receive())
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    await channel.deliver({"type": "websocket.receive", "text": "x"})
    assert (await asyncio.wait_for(second, 5))["text"] == "x"
    assert first.cancelled()
    assert channel.backlog == 0
    beat.stop()


async def test_a_full_inbox_stops_waiting_for_room_once_closed() -> None:
    _, channel, connection, beat = make_session()
    for i in range(INBOX_SIZE):
        await channel.deliver({"type": "websocket.receive", "text": str(i)})
    blocked = asyncio.create_task(channel.deliver({"type": "websocket.receive", "text": "late"}))
    await asyncio.sleep(0)
    assert not blocked.done()
    connection.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")
    await asyncio.wait_for(blocked, 5)
    assert channel.backlog == INBOX_SIZE  # the late frame was dropped, the rest are kept
    assert (await channel.receive())["text"] == "0"
    beat.stop()
    await connection.wait_closed()
