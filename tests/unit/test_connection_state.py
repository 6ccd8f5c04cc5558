"""A connection's life as a state machine: the legal moves, the illegal ones, no socket."""

from __future__ import annotations

import itertools

import pytest

from tempest_ws import (
    CloseCode,
    ConnectionState,
    ConnectionStateError,
    TempestWSError,
    WebSocketConnection,
)
from tempest_ws.hub._state import advance
from tests.helpers.support import Peer

CONNECTING, OPEN, CLOSING, CLOSED = ConnectionState
LEGAL = {(CONNECTING, OPEN), (CONNECTING, CLOSING), (OPEN, CLOSING), (CLOSING, CLOSED)}


@pytest.mark.parametrize(("current", "target"), sorted(LEGAL, key=str))
def test_each_legal_move_returns_its_target(
    current: ConnectionState, target: ConnectionState
) -> None:
    assert advance(current, target) is target


@pytest.mark.parametrize(
    ("current", "target"),
    [move for move in itertools.product(ConnectionState, repeat=2) if move not in LEGAL],
    ids=str,
)
def test_every_other_move_raises(current: ConnectionState, target: ConnectionState) -> None:
    with pytest.raises(ConnectionStateError) as caught:
        advance(current, target)
    error = caught.value
    assert isinstance(error, TempestWSError)
    assert isinstance(error, RuntimeError)
    assert (error.current, error.target) == (current.name, target.name)
    assert error.code == "invalid_state"
    assert f"from {current.name} to {target.name}" in str(error)


def test_the_states_are_exported_in_order() -> None:
    from tempest_ws.hub import ConnectionState as FromHub

    assert FromHub is ConnectionState
    assert [s.name for s in ConnectionState] == ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]


async def test_started_then_closed_goes_through_every_state() -> None:
    peer = Peer()
    connection = WebSocketConnection("u1", send=peer.send)
    seen = [connection.state]
    connection.add_close_callback(lambda c: seen.append(c.state))
    assert connection.enqueue("queued before start")
    assert connection.state is CONNECTING
    assert peer.texts() == []
    connection.start()
    seen.append(connection.state)
    connection.start()  # a second start does nothing
    await connection.close()
    seen.append(connection.state)
    assert seen == [CONNECTING, OPEN, CLOSING, CLOSED]
    assert peer.texts() == ["queued before start"]
    assert peer.close_codes() == [CloseCode.NORMAL]


async def test_closed_before_start_never_opens_and_drops_its_queue() -> None:
    peer = Peer()
    connection = WebSocketConnection("u1", send=peer.send)
    connection.enqueue("never sent")
    connection.close_soon(CloseCode.TRY_AGAIN_LATER, "full")
    assert connection.state is CLOSING
    assert connection.closing
    connection.start()  # too late: a closing connection does not open
    assert connection.state is CLOSING
    assert not connection.enqueue("refused")
    await connection.wait_closed()
    assert connection.state is CLOSED
    assert peer.texts() == []
    assert peer.close_codes() == [CloseCode.TRY_AGAIN_LATER]


async def test_a_peer_that_left_goes_to_closed_at_once_and_a_later_close_is_a_no_op() -> None:
    peer = Peer()
    connection = WebSocketConnection("u1", send=peer.send)
    connection.start()
    connection.peer_closed(CloseCode.GOING_AWAY)
    assert connection.state is CLOSED
    assert connection.close_code == CloseCode.GOING_AWAY
    await connection.close(CloseCode.NORMAL)  # idempotent: nothing is written
    connection.close_soon(CloseCode.POLICY_VIOLATION)
    assert connection.state is CLOSED
    assert connection.close_code == CloseCode.GOING_AWAY
    assert peer.sent == []


async def test_state_is_read_only() -> None:
    connection = WebSocketConnection("u1", send=Peer().send)
    with pytest.raises(AttributeError):
        connection.state = OPEN  # type: ignore[misc]
