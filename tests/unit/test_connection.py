"""The per-connection queue, writer and close, against an in-memory ASGI send."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from websockets.protocol import State

from tempest_ws import CloseCode, ConnectionClosedError, WebSocketConnection
from tempest_ws.hub._direct import DirectWriter, TickFlusher
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


# -- what an idle connection keeps -----------------------------------------------------


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False


class _Protocol:
    """What the direct writer reads of uvicorn's sansio protocol, writable at will."""

    class _Conn:
        state = State.OPEN

    def __init__(self) -> None:
        self.conn = self._Conn()
        self.close_sent = False
        self.disconnected = False
        self.writable = asyncio.Event()
        self.writable.set()


def _with_direct_path(connection: WebSocketConnection) -> tuple[_Protocol, _Transport]:
    """Give ``connection`` a direct writer on a recording transport (a test knob)."""
    protocol, transport = _Protocol(), _Transport()
    connection._direct = DirectWriter(protocol, transport, State.OPEN, TickFlusher())
    return protocol, transport


async def test_the_backlog_exists_only_while_frames_wait() -> None:
    peer = Peer()
    connection = WebSocketConnection("u1", send=peer.send)
    protocol, transport = _with_direct_path(connection)
    assert connection._backlog is None  # nothing made before a frame must wait
    assert connection.enqueue("hello")  # before start: queued
    assert connection._backlog is not None
    assert connection.pending == 1
    connection.start()  # written at once, and the idle backlog let go
    assert connection._backlog is None
    assert (connection.pending, len(transport.writes)) == (0, 1)
    assert connection.enqueue("a")  # written straight away, nothing made
    assert connection._backlog is None
    protocol.writable.clear()  # the transport is full: the next frame waits
    assert connection.enqueue("b")
    assert connection._backlog is not None
    await until(lambda: connection.pending == 0 and peer.texts() == ["b"])
    protocol.writable.set()
    await asyncio.sleep(0)  # the writer task ends once the queue is empty
    assert connection.enqueue("c")  # the idle backlog is let go, "c" written directly
    assert connection._backlog is None
    assert connection.frames_sent == 4
    await connection.close()
    assert peer.close_codes() == [CloseCode.NORMAL]


async def test_a_connection_without_a_direct_path_keeps_its_writer_while_open() -> None:
    peer = Peer()
    connection = WebSocketConnection("u1", send=peer.send)
    connection.start()
    assert connection._backlog is not None  # its writer sends every frame
    assert connection.enqueue("a")
    await until(lambda: peer.texts() == ["a"])
    assert connection.enqueue("b")
    await until(lambda: peer.texts() == ["a", "b"])
    await connection.close()


async def test_close_futures_and_callbacks_are_made_for_their_first_user() -> None:
    connection = WebSocketConnection("u1", send=Peer().send)
    assert (connection._closing, connection._finished, connection._callbacks) == (None,) * 3
    seen: list[str] = []
    connection.add_close_callback(lambda c: seen.append("first"))
    connection.add_close_callback(lambda c: seen.append("second"))
    future = connection.closing_future()
    assert not future.done()
    await connection.close(CloseCode.GOING_AWAY)
    assert seen == ["first", "second"]
    assert future.result() == CloseCode.GOING_AWAY
    assert connection.closing_future().result() == CloseCode.GOING_AWAY  # asked for after
    await asyncio.wait_for(connection.wait_closed(), 5)
    assert connection._callbacks is None  # run once, then let go


async def test_connected_at_is_a_utc_datetime_of_the_handshake() -> None:
    before = datetime.now(UTC)
    connection = WebSocketConnection("u1", send=Peer().send)
    after = datetime.now(UTC)
    assert before - timedelta(milliseconds=1) <= connection.connected_at <= after
    assert connection.connected_at == connection.connected_at
