"""Per-socket write coalescing: a tick's frames for one socket go out in one write.

Unit tests drive `DirectWriter` with a small protocol double; the end-to-end tests
run a real uvicorn (in this process, so the hub's producers can run a whole burst inside
one event-loop tick) and a real ``websockets`` client, and count the writes with a
wrapper around the connection's real transport.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from tempest_ws import WebSocketConnection, WebSocketHub
from tempest_ws.codes import CloseCode
from tempest_ws.hub._direct import CORK_BYTES, DirectWriter, TickFlusher
from tempest_ws.testing import serve
from tests.helpers.backplane_nodes import redis_backplane
from tests.helpers.hardening import RawClient
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import build_app, make_settings, stalled_socket, token, until, ws_url

# -- unit: the writer and the tick ----------------------------------------------------


class _Transport:
    """Records what is written; ``closing`` as a transport reports it."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing


class _Conn:
    state = State.OPEN


class _Protocol:
    """What `DirectWriter` reads of uvicorn's sansio protocol."""

    def __init__(self) -> None:
        self.conn = _Conn()
        self.close_sent = False
        self.disconnected = False
        self.writable = asyncio.Event()
        self.writable.set()


def _writer(flusher: TickFlusher | None = None) -> tuple[DirectWriter, _Transport, _Protocol]:
    protocol, transport = _Protocol(), _Transport()
    return (
        DirectWriter(protocol, transport, State.OPEN, flusher or TickFlusher()),
        transport,
        protocol,
    )


def _frame(text: str) -> bytes:
    return bytes((0x81, len(text))) + text.encode()


async def test_the_first_frame_of_a_tick_is_written_at_once_the_rest_at_its_end() -> None:
    writer, transport, _ = _writer()
    assert writer.write("a")
    assert transport.writes == [_frame("a")]  # the paced case: as before, no wait
    assert writer.write("b")
    assert writer.write("c")
    assert transport.writes == [_frame("a")]
    assert writer.held == 6  # two frames of three bytes
    await asyncio.sleep(0)  # the tick ends
    assert transport.writes == [_frame("a"), _frame("b") + _frame("c")]
    assert writer.held == 0
    assert writer.write("d")  # a new tick: its first frame goes at once again
    assert transport.writes[-1] == _frame("d")


async def test_one_flusher_ends_the_tick_for_every_socket_in_order() -> None:
    flusher = TickFlusher()
    pairs = [_writer(flusher) for _ in range(3)]
    for text in ("x", "y", "z"):
        for writer, _, _ in pairs:
            writer.write(text)
    await asyncio.sleep(0)
    for _, transport, _ in pairs:
        assert transport.writes == [_frame("x"), _frame("y") + _frame("z")]


async def test_held_frames_are_written_at_once_before_they_pass_the_threshold() -> None:
    writer, transport, _ = _writer()
    text = "q" * 100
    count = CORK_BYTES // (len(text) + 2) + 2
    for _ in range(count):
        assert writer.write(text)
    assert len(transport.writes) == 2  # the first frame, then one threshold write
    assert CORK_BYTES - 102 < len(transport.writes[1]) <= CORK_BYTES
    assert writer.held <= CORK_BYTES
    await asyncio.sleep(0)
    assert len(transport.writes) == 3
    assert b"".join(transport.writes) == _frame(text) * count


async def test_a_threshold_write_that_pauses_the_transport_sends_the_next_frame_to_the_queue() -> (
    None
):
    protocol = _Protocol()

    class Pausing(_Transport):
        def write(self, data: bytes) -> None:
            super().write(data)
            if len(data) > 50_000:  # past the mark: the transport pauses the protocol
                protocol.writable.clear()

    transport = Pausing()
    writer = DirectWriter(protocol, transport, State.OPEN, TickFlusher())
    writer.write("first")
    big = "b" * 30_000
    assert writer.write(big)
    assert writer.write(big)  # 60 KB held
    assert not writer.write(big)  # the held 60 KB went out; this one is the caller's
    assert [len(w) for w in transport.writes] == [7, 2 * 30_004]
    assert writer.held == 0


async def test_a_frame_as_large_as_the_threshold_is_written_at_once() -> None:
    writer, transport, _ = _writer()
    writer.write("first")
    huge = "h" * CORK_BYTES
    assert writer.write(huge)
    assert len(transport.writes) == 2
    assert writer.held == 0


async def test_a_batch_or_a_flush_writes_the_held_frames_first() -> None:
    writer, transport, _ = _writer()
    writer.write("a")
    writer.write("b")
    assert writer.write_frames(_frame("c"))
    assert transport.writes == [_frame("a"), _frame("b") + _frame("c")]
    writer.write("d")
    writer.flush()
    assert transport.writes[-1] == _frame("d")
    await asyncio.sleep(0)
    assert len(transport.writes) == 3  # nothing left for the end of the tick


async def test_held_frames_never_follow_a_close_frame_sent_meanwhile() -> None:
    writer, transport, protocol = _writer()
    writer.write("a")
    writer.write("b")
    protocol.close_sent = True  # uvicorn answered the peer's close within this tick
    await asyncio.sleep(0)
    assert transport.writes == [_frame("a")]
    assert not writer.write("c")  # and nothing more is accepted


def test_a_loop_closed_before_its_tick_ended_does_not_leave_the_flusher_stuck() -> None:
    flusher = TickFlusher()

    writers: list[DirectWriter] = []

    def two_frames_then_stop() -> None:
        writers.append(held := _writer(flusher)[0])
        held.write("a")
        held.write("b")  # schedules the end of the tick, which never runs:
        first.stop()  # the loop stops after this batch of callbacks

    first = asyncio.new_event_loop()
    try:
        first.call_soon(two_frames_then_stop)
        first.run_forever()
    finally:
        first.close()
    assert writers[0].held == 3

    async def next_loop() -> list[bytes]:
        writer, transport, _ = _writer(flusher)
        writer.write("c")
        writer.write("d")
        await asyncio.sleep(0)
        return transport.writes

    second = asyncio.new_event_loop()
    try:
        writes = second.run_until_complete(next_loop())
    finally:
        second.close()
    assert b"".join(writes) == _frame("c") + _frame("d")


# -- end to end: real uvicorn, a real client, the real transport wrapped --------------


class CountingTransport:
    """The connection's real transport, with every ``write`` recorded before it is made."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))
        self.real.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _count_writes(connection: WebSocketConnection) -> CountingTransport:
    """Put a `CountingTransport` under the connection and under uvicorn's protocol,
    so the hub's writes and uvicorn's own (the close frame) are both recorded."""
    direct = connection._direct
    assert direct is not None, "uvicorn's websockets-sansio protocol gives a direct path"
    counting = CountingTransport(direct._transport)
    direct._transport = counting
    direct._protocol.transport = counting
    return counting


async def _idle(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    while True:
        message = await ws.receive_json()
        if message.get("type") == "go":  # hub frames, then the handler's own, in one tick
            for i in range(20):
                await hub.send_to(connection.user_id, {"type": "n", "data": {"i": i}})
            await ws.send_json({"type": "n", "data": {"i": 20}})
            for i in range(21, 40):
                await hub.send_to(connection.user_id, {"type": "n", "data": {"i": i}})


@asynccontextmanager
async def _server(**overrides: Any) -> AsyncIterator[tuple[str, WebSocketHub]]:
    settings = make_settings(**overrides)
    app, hub = build_app(settings, handler=_idle)
    async with serve(app, settings=settings, ws="websockets-sansio") as base:
        yield base, hub


async def _open(base: str, hub: WebSocketHub, user: str) -> tuple[ClientConnection, Any]:
    # A small receive buffer, so a burst soon fills what the kernel holds for this socket.
    host, port = base.removeprefix("http://").split(":")
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (host, int(port)))
    ws = await connect(
        ws_url(base),
        sock=sock,
        subprotocols=["bearer", token(user)],  # type: ignore[list-item]
        max_size=None,
        max_queue=None,
    )
    assert json.loads(await ws.recv())["type"] == "hello"
    await until(lambda: bool(hub.connections_of(user)))
    return ws, hub.connections_of(user)[0]


async def _numbers(ws: ClientConnection, count: int) -> list[int]:
    got: list[int] = []
    async with asyncio.timeout(30):
        while len(got) < count:
            got.append(json.loads(await ws.recv())["data"]["i"])
    return got


async def test_a_burst_in_one_tick_costs_a_socket_two_writes_not_one_per_frame() -> None:
    burst = 500
    async with _server() as (base, hub):
        ws, connection = await _open(base, hub, "alice")
        counting = _count_writes(connection)
        for i in range(burst):  # no await suspends here: one event-loop tick
            await hub.broadcast({"type": "n", "data": {"i": i}})
        assert await _numbers(ws, burst) == list(range(burst))
        assert len(counting.writes) <= 3, len(counting.writes)  # not 500
        await ws.close()


async def test_paced_frames_are_each_written_at_once() -> None:
    async with _server() as (base, hub):
        ws, connection = await _open(base, hub, "alice")
        counting = _count_writes(connection)
        for i in range(5):
            await hub.broadcast({"type": "n", "data": {"i": i}})
            assert len(counting.writes) == i + 1  # written inside broadcast, not later
            await asyncio.sleep(0)
        assert await _numbers(ws, 5) == list(range(5))
        await ws.close()


async def test_direct_held_queued_and_handler_frames_arrive_in_call_order() -> None:
    # 16 KiB frames overrun the transport's high-water mark within the tick: the first
    # frames go direct, the next are held, the rest queue behind a paused transport.
    burst, text = 400, "z" * 16_000
    async with _server() as (base, hub):
        ws, connection = await _open(base, hub, "alice")
        counting = _count_writes(connection)
        for i in range(burst):
            await hub.broadcast({"type": "n", "data": {"i": i, "t": text}})
        queued_during_burst = connection.pending
        assert await _numbers(ws, burst) == list(range(burst))
        assert queued_during_burst > 0  # the queued path was part of it
        assert len(counting.writes) < burst // 2
        await ws.send(json.dumps({"type": "go"}))
        assert await _numbers(ws, 40) == list(range(40))  # the handler's 20 in its place
        await ws.close()


async def test_a_close_after_coalesced_frames_arrives_after_them() -> None:
    async with _server() as (base, hub):
        ws, connection = await _open(base, hub, "alice")
        counting = _count_writes(connection)
        for i in range(50):
            await hub.broadcast({"type": "n", "data": {"i": i}})
        await connection.close(CloseCode.NORMAL, "done")
        assert await _numbers(ws, 50) == list(range(50))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == CloseCode.NORMAL
        assert counting.writes[-1][0] == 0x88  # the close frame is the last write
        assert len(counting.writes) <= 3


async def test_a_stalled_reader_is_still_closed_1013_under_coalescing() -> None:
    async with _server(WS_SEND_QUEUE_BYTES=256 * 1024, WS_SLOW_CONSUMER_TIMEOUT_SECONDS=1) as (
        base,
        hub,
    ):
        raw = await stalled_socket(base, "stuck")
        await until(lambda: bool(hub.connections_of("stuck")))
        stuck = hub.connections_of("stuck")[0]
        counting = _count_writes(stuck)
        reader, connection = await _open(base, hub, "reader")
        text = "s" * 4000
        for i in range(1000):  # 4 MB in one tick: far more than the budget
            await hub.broadcast({"type": "n", "data": {"i": i, "t": text}})
        assert len(counting.writes) < 100  # coalesced until the transport paused
        got = await _numbers(reader, 1000)
        assert got == list(range(1000))  # the fast reader is not closed
        await until(lambda: stuck.closing, timeout=30)
        assert stuck.close_code == CloseCode.TRY_AGAIN_LATER
        stream_reader, stream_writer = await asyncio.open_connection(sock=raw)
        client = RawClient(stream_reader, stream_writer)
        try:
            _, close = await client.frames_until_close(timeout=60)
        finally:
            await client.close()
        assert close is not None
        assert close.close_code == CloseCode.TRY_AGAIN_LATER
        assert not connection.closing
        await reader.close()


@pytest.mark.redis
async def test_a_packet_burst_from_another_node_costs_a_socket_few_writes(
    redis: RedisServer,
) -> None:
    burst = 300
    settings = make_settings()
    receiving = WebSocketHub(backplane=redis_backplane(redis.url))
    app, hub = build_app(settings, handler=_idle, hub=receiving)
    sender = WebSocketHub(backplane=redis_backplane(redis.url))
    async with serve(app, settings=settings, ws="websockets-sansio") as base:
        ws, connection = await _open(base, hub, "alice")
        await sender.start()
        try:
            counting = _count_writes(connection)
            # Concurrent publishers: the sender pipelines them, so they reach the receiving
            # node as a burst of packets read in a few ticks.
            await asyncio.gather(
                *(sender.broadcast({"type": "n", "data": {"i": i}}) for i in range(burst))
            )
            got = await _numbers(ws, burst)
            assert sorted(got) == list(range(burst))
            assert len(counting.writes) < burst // 4, len(counting.writes)
        finally:
            await sender.stop()
        await ws.close()
