"""The send budget: bytes, frames, the stall timer and bounded producer waits, without sockets."""

from __future__ import annotations

import asyncio

from tempest_ws import CloseCode, WebSocketConnection
from tempest_ws.hub._flow import SendBudget
from tempest_ws.wire._frames import encode_text_frame, frame_size
from tests.helpers.support import Peer, until


def test_frame_size_is_the_size_on_the_wire() -> None:
    for text in ("", "a" * 125, "a" * 126, "a" * 70_000, "é" * 10, "日本" * 40_000):
        assert frame_size(text) == len(encode_text_frame(text))


async def test_the_frame_that_would_pass_the_byte_budget_is_refused() -> None:
    budget = SendBudget(max_bytes=1024, max_frames=100)
    connection = WebSocketConnection("u1", send=Peer().send, budget=budget)
    frame = "x" * 300  # 304 bytes on the wire (a 16-bit length)
    assert all(connection.enqueue(frame) for _ in range(3))
    assert connection.pending_bytes == 912
    assert not connection.enqueue(frame)
    assert (connection.pending, connection.pending_bytes) == (3, 912)


async def test_one_frame_larger_than_the_budget_goes_when_nothing_waits() -> None:
    connection = WebSocketConnection("u1", send=Peer().send, budget=SendBudget(max_bytes=1024))
    assert connection.enqueue("x" * 5000)
    assert not connection.enqueue("y")


async def test_a_deep_queue_makes_producers_wait_until_it_drains() -> None:
    budget = SendBudget(max_bytes=4000, producer_wait=30)
    peer = Peer()
    connection = WebSocketConnection("u1", send=peer.send, budget=budget)
    for _ in range(7):  # 7 x 504 bytes: above half the budget
        connection.enqueue("x" * 500)
    assert budget.pressure
    assert budget.holds(connection)
    waiting = asyncio.create_task(budget.relieve())
    await asyncio.sleep(0)
    assert not waiting.done()
    connection.start()  # the writer drains the queue: the producer is released
    await asyncio.wait_for(waiting, 10)
    assert not budget.holds(connection)
    assert len(peer.texts()) == 7


async def test_a_producer_waits_at_most_producer_wait() -> None:
    budget = SendBudget(max_bytes=4000, producer_wait=0.05)
    peer = Peer()
    peer.stalled = True
    connection = WebSocketConnection("u1", send=peer.send, budget=budget, close_timeout=0.1)
    connection.start()
    for _ in range(7):
        connection.enqueue("x" * 500)
    await asyncio.wait_for(budget.relieve(), 10)
    assert not budget.holds(connection)  # its allowance is spent: nobody waits for it again
    connection.enqueue("x" * 500)
    assert not budget.pressure
    await connection.close(CloseCode.GOING_AWAY)


def test_a_reader_stalled_before_its_queue_ran_deep_holds_nobody() -> None:
    budget = SendBudget(producer_wait=1.0)
    budget.deep(object(), now=100.0, moved_at=98.0)  # type: ignore[arg-type]
    assert not budget.pressure
    budget.deep(marker := object(), now=100.0, moved_at=99.5)  # type: ignore[arg-type]
    assert budget.pressure
    assert budget.holds(marker)  # type: ignore[arg-type]


def test_producer_wait_zero_never_holds() -> None:
    budget = SendBudget(producer_wait=0)
    budget.deep(marker := object(), now=1.0, moved_at=1.0)  # type: ignore[arg-type]
    assert not budget.pressure
    assert not budget.holds(marker)  # type: ignore[arg-type]


async def test_a_queue_that_does_not_move_is_closed_1013() -> None:
    budget = SendBudget(stall_timeout=0.05)
    peer = Peer()
    peer.stalled = True  # the first send never completes
    connection = WebSocketConnection("u1", send=peer.send, budget=budget, close_timeout=0.1)
    connection.start()
    connection.enqueue("a")  # in flight for good: the queue itself stays empty
    await asyncio.sleep(0.01)
    connection.enqueue("b")  # a trickle does not restart the clock
    await until(lambda: connection.close_code is not None, timeout=10)
    assert connection.close_code == CloseCode.TRY_AGAIN_LATER
    assert budget.stalled == 1
    await connection.wait_closed()
    assert connection.pending_bytes == 0


async def test_a_queue_that_keeps_moving_is_not_closed() -> None:
    budget = SendBudget(stall_timeout=0.05)
    peer = Peer()
    connection = WebSocketConnection("u1", send=peer.send, budget=budget)
    connection.start()
    for i in range(20):
        connection.enqueue(str(i))
        await asyncio.sleep(0.01)
    await until(lambda: len(peer.texts()) == 20)
    await asyncio.sleep(0.1)  # past the stall timer of the last backlog
    assert connection.close_code is None
    await connection.close()
