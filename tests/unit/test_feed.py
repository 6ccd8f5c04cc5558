"""The feed as uvicorn's websockets-sansio protocol sees it: the queue's contract, reading
paused and resumed, events queued before it are taken first, and the queue given back."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from tempest_ws._types import Message
from tempest_ws.codes import CloseCode
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.router._feed import Feed
from tempest_ws.router._heartbeat import HeartbeatWheel
from tempest_ws.router._session import INBOX_SIZE, PONG_FRAME, HandlerChannel, SessionLimits

LIMITS = SessionLimits(
    max_message_bytes=1024,
    accept_binary=False,
    max_invalid_frames=3,
    heartbeat_seconds=30.0,
    heartbeat_timeout=60.0,
)


class Transport:
    def __init__(self) -> None:
        self.reading = True
        self.closing = False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def is_closing(self) -> bool:
        return self.closing


class SansioProtocol:
    """What the feed reads of uvicorn's websockets-sansio protocol."""

    def __init__(self) -> None:
        self.queue: Any = asyncio.Queue()
        self.transport = Transport()
        self.read_paused = False
        self.handshake_complete = True
        self.close_sent = False
        self.disconnected = False

    def frame(self, text: str) -> None:
        """As ``send_receive_event_to_app`` does."""
        self.queue.put_nowait({"type": "websocket.receive", "text": text})
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()


SansioProtocol.__module__ = "uvicorn.protocols.websockets.websockets_sansio_impl"


class Broken:
    def touch(self) -> None:
        raise RuntimeError("bug")


async def session(protocol: SansioProtocol) -> tuple[Feed, HandlerChannel, WebSocketConnection]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    channel = HandlerChannel(protocol.queue.get, send)
    connection = WebSocketConnection("u1", send=send)
    channel.attach(connection)
    wheel: HeartbeatWheel[HandlerChannel] = HeartbeatWheel(
        interval=30.0, timeout=60.0, on_ping=lambda _: None, on_timeout=lambda _: None
    )
    feed = Feed.install(protocol, channel, connection, wheel.add(channel), LIMITS)
    assert feed is not None
    return feed, channel, connection


async def test_events_queued_before_install_come_first_and_reading_resumes() -> None:
    protocol = SansioProtocol()
    protocol.frame('{"type":"a"}')
    assert not protocol.transport.reading  # uvicorn paused after queueing it
    feed, channel, _ = await session(protocol)
    assert protocol.queue is feed
    assert protocol.transport.reading
    protocol.frame(PONG_FRAME)  # swallowed
    protocol.frame('{"type":"b"}')
    assert protocol.transport.reading  # uvicorn no longer pauses after each frame
    assert [(await channel.receive())["text"] for _ in range(2)] == ['{"type":"a"}', '{"type":"b"}']
    assert feed.empty()
    assert feed.qsize() == 0
    await feed.stop()


async def test_a_full_inbox_pauses_reading_until_the_handler_takes_a_frame() -> None:
    protocol = SansioProtocol()
    feed, channel, _ = await session(protocol)
    for n in range(INBOX_SIZE + 3):
        protocol.frame(f'{{"type":"n","data":{n}}}')
    assert feed.busy
    assert feed.paused
    assert not protocol.transport.reading
    assert feed.waiting == 2
    assert channel.backlog == INBOX_SIZE
    assert channel.held_by_app
    taken = [await channel.receive() for _ in range(INBOX_SIZE + 3)]
    assert [m["text"] for m in taken] == [
        f'{{"type":"n","data":{n}}}' for n in range(INBOX_SIZE + 3)
    ]
    await asyncio.sleep(0)
    assert not feed.busy
    assert protocol.transport.reading
    await feed.stop()


async def test_stop_gives_the_protocol_a_queue_that_gets_later_events() -> None:
    protocol = SansioProtocol()
    feed, _, connection = await session(protocol)
    waiter = asyncio.create_task(feed.get())  # a caller of the protocol's receive()
    await asyncio.sleep(0)
    await feed.stop()
    assert isinstance(protocol.queue, asyncio.Queue)
    protocol.queue.put_nowait({"type": "websocket.disconnect", "code": 1000})
    assert (await asyncio.wait_for(waiter, 5))["type"] == "websocket.disconnect"
    connection.close_soon(CloseCode.NORMAL)
    await connection.wait_closed()


async def test_a_disconnect_ends_the_session_and_a_failure_closes_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    protocol = SansioProtocol()
    feed, channel, connection = await session(protocol)
    protocol.queue.put_nowait({"type": "websocket.disconnect", "code": 1001})
    assert connection.close_code == 1001
    assert (await channel.receive())["type"] == "websocket.disconnect"
    await feed.stop()

    broken = SansioProtocol()
    feed, _, connection = await session(broken)
    beat = feed.heartbeat
    feed.heartbeat = Broken()  # a bug on the read path
    with caplog.at_level(logging.ERROR, logger="tempest_ws.session"):
        broken.frame('{"type":"a"}')
    beat.stop()
    assert connection.close_code == CloseCode.INTERNAL_ERROR
    assert any("reading failed" in r.getMessage() for r in caplog.records)
    await feed.stop()
    await connection.wait_closed()


async def test_any_other_protocol_is_left_alone() -> None:
    protocol = SansioProtocol()
    protocol.close_sent = True
    _, channel, connection = await session_or_none(protocol)
    assert channel is None
    assert isinstance(protocol.queue, asyncio.Queue)
    assert connection is None


async def session_or_none(protocol: Any) -> tuple[Any, Any, Any]:
    channel = HandlerChannel(protocol.queue.get, protocol.queue.put)
    connection = WebSocketConnection("u1", send=protocol.queue.put)
    channel.attach(connection)
    wheel: HeartbeatWheel[HandlerChannel] = HeartbeatWheel(
        interval=30.0, timeout=60.0, on_ping=lambda _: None, on_timeout=lambda _: None
    )
    beat = wheel.add(channel)
    feed = Feed.install(protocol, channel, connection, beat, LIMITS)
    beat.stop()
    if feed is None:
        return None, None, None
    return feed, channel, connection
