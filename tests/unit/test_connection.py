"""The per-connection queue, writer and close, against an in-memory ASGI send."""

from __future__ import annotations

import asyncio

import pytest

from tempest_ws import CloseCode, ConnectionClosedError, WebSocketConnection
from tests.helpers.support import Peer, until


class AbortRecorder(asyncio.WriteTransport):
    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.aborted


async def test_frames_are_written_in_order() -> None:
    peer = Peer()
    connection = WebSocketConnection("u1", send=peer.send)
    for i in range(50):
        assert connection.enqueue(f"frame-{i}")
    connection.start()
    await until(lambda: len(peer.texts()) == 50)
    assert peer.texts() == [f"frame-{i}" for i in range(50)]
    await connection.close()
    assert peer.close_codes() == [CloseCode.NORMAL]


async def test_full_queue_refuses_without_blocking() -> None:
    connection = WebSocketConnection("u1", send=Peer().send, queue_size=3)
    assert all(connection.enqueue("x") for _ in range(3))
    assert not connection.enqueue("x")
    assert connection.pending == 3


async def test_send_on_full_queue_closes_as_slow_consumer() -> None:
    peer = Peer()
    connection = WebSocketConnection("u1", send=peer.send, queue_size=1)
    connection.enqueue("a")
    with pytest.raises(ConnectionClosedError):
        await connection.send({"type": "b"})
    await connection.wait_closed()
    assert connection.close_code == CloseCode.TRY_AGAIN_LATER
    assert peer.close_codes() == [CloseCode.TRY_AGAIN_LATER]


async def test_normal_close_flushes_queued_frames_first() -> None:
    peer = Peer()
    connection = WebSocketConnection("u1", send=peer.send)
    connection.start()
    for i in range(20):
        connection.enqueue(str(i))
    await connection.close()
    assert peer.texts() == [str(i) for i in range(20)]
    assert peer.sent[-1]["type"] == "websocket.close"


async def test_error_close_drops_queued_frames() -> None:
    peer = Peer()
    peer.stalled = True
    connection = WebSocketConnection("u1", send=peer.send, close_timeout=0.05)
    connection.start()
    for i in range(5):
        connection.enqueue(str(i))
    await until(lambda: connection.pending == 4)  # the writer is stuck on frame 0
    peer.stalled = False
    peer.unblock.set()
    await connection.close(CloseCode.HEARTBEAT_TIMEOUT, "heartbeat timeout")
    assert peer.close_codes() == [CloseCode.HEARTBEAT_TIMEOUT]
    assert peer.texts() == []  # the blocked send was cancelled, nothing else written
    assert connection.pending == 0


async def test_stalled_peer_is_aborted_after_the_close_timeout() -> None:
    peer = Peer()
    peer.stalled = True
    transport = AbortRecorder()
    connection = WebSocketConnection("u1", send=peer.send, close_timeout=0.05, transport=transport)
    connection.start()
    connection.enqueue("x")
    connection.close_soon(CloseCode.TRY_AGAIN_LATER, "slow consumer")
    await asyncio.wait_for(connection.wait_closed(), 5)
    assert transport.aborted
    assert peer.sent == []


async def test_close_is_idempotent_and_callbacks_run_once() -> None:
    peer = Peer()
    seen: list[str] = []
    connection = WebSocketConnection("u1", send=peer.send)
    connection.add_close_callback(lambda c: seen.append(c.connection_id))
    connection.start()
    await asyncio.gather(connection.close(CloseCode.GOING_AWAY), connection.close(4000))
    await connection.close()
    assert seen == [connection.connection_id]
    assert peer.close_codes() == [CloseCode.GOING_AWAY]
    assert connection.close_code == CloseCode.GOING_AWAY
    assert not connection.enqueue("late")


async def test_failed_send_marks_the_connection_dead() -> None:
    peer = Peer()
    peer.fail_with = ConnectionResetError("gone")
    closed: list[int | None] = []
    connection = WebSocketConnection("u1", send=peer.send)
    connection.add_close_callback(lambda c: closed.append(c.close_code))
    connection.start()
    connection.enqueue("x")
    await asyncio.wait_for(connection.wait_closed(), 5)
    assert closed == [CloseCode.ABNORMAL]


async def test_a_broken_close_callback_does_not_stop_the_close(
    caplog: pytest.LogCaptureFixture,
) -> None:
    peer = Peer()
    connection = WebSocketConnection("u1", send=peer.send)

    def broken(_: WebSocketConnection) -> None:
        raise RuntimeError("bug")

    connection.add_close_callback(broken)
    await connection.close()
    assert peer.close_codes() == [CloseCode.NORMAL]
    assert "close callback failed" in caplog.text


def test_identity() -> None:
    async def build() -> WebSocketConnection:
        return WebSocketConnection("u1", send=Peer().send, metadata={"k": 1})

    connection = asyncio.run(build())
    assert connection.user_key == "u1"
    assert len(connection.connection_id) == 32
    assert connection.metadata == {"k": 1}
    assert connection.connected_at.tzinfo is not None
    assert "open" in repr(connection)
