"""The fragment counter and the server-options check, without sockets."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers
from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode

from tempest_ws.router._server_guard import (
    FragmentBudget,
    ServerGuard,
    find_protocol,
    protocol_name,
)


def _frame(opcode: Opcode, *, fin: bool) -> Frame:
    return Frame(opcode, b"", fin=fin)


def test_fragments_are_counted_per_message_and_control_frames_pass() -> None:
    hits: list[int] = []
    budget = FragmentBudget(3, hits.append)
    for _ in range(2):  # two messages of 3 non-final fragments each, then their ends
        budget.decode(_frame(Opcode.TEXT, fin=False))
        budget.decode(_frame(Opcode.PING, fin=True))
        budget.decode(_frame(Opcode.CONT, fin=False))
        budget.decode(_frame(Opcode.CONT, fin=False))
        budget.decode(_frame(Opcode.CONT, fin=True))
    budget.decode(_frame(Opcode.BINARY, fin=True))
    assert hits == []
    for _ in range(3):
        budget.decode(_frame(Opcode.CONT, fin=False))
    with pytest.raises(PayloadTooBig) as raised:
        budget.decode(_frame(Opcode.CONT, fin=False))
    assert str(raised.value) == "too many fragments"
    assert hits == [3]
    frame = _frame(Opcode.TEXT, fin=True)
    assert budget.encode(frame) is frame


def test_anything_but_a_uvicorn_protocol_is_left_alone() -> None:
    async def receive() -> None: ...

    class Stranger:
        config = None

        async def receive(self) -> None: ...

    assert find_protocol(receive, Stranger().receive) is None
    assert protocol_name(Stranger()) == "unknown"
    guard = ServerGuard()
    guard.before_accept(None, Headers(), 1024)
    assert guard.after_accept(None, 8, "c1") is False
    stats = guard.stats()
    assert (stats.protocol, stats.unsafe_connections) == ("", 0)
