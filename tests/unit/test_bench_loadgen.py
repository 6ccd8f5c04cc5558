"""The benchmark's load generator counts a client only when its connection really opened."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest

from bench.loadgen import Generator

ANSWER = b"HTTP/1.1 101 Switching Protocols\r\n\r\n"


class _Transport:
    def __init__(self) -> None:
        self.aborted = False

    def write(self, data: bytes) -> None:
        pass

    def is_closing(self) -> bool:
        return False  # what uvloop reports for a transport it closed on cancellation

    def abort(self) -> None:
        self.aborted = True


@pytest.fixture
def listener() -> Any:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


def _answered(transport: _Transport, *, cut: bool) -> Any:
    """A ``create_connection`` whose protocol opens and gets the server's 101, then which
    returns, or (``cut``) raises the open timeout, as a timeout firing in that tick does:
    the protocol saw an open, answered connection, but uvloop has closed the transport
    (and never calls ``connection_lost`` for it)."""

    async def create_connection(
        factory: Callable[[], asyncio.Protocol], sock: socket.socket
    ) -> tuple[_Transport, asyncio.Protocol]:
        protocol = factory()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(ANSWER)  # type: ignore[attr-defined]
        sock.close()
        if cut:
            raise TimeoutError
        return transport, protocol

    return create_connection


@pytest.mark.parametrize(
    ("cut", "counts"),
    [
        pytest.param(True, False, id="cut by its timeout: a failure, though the 101 came"),
        pytest.param(False, True, id="returned with its 101: counts"),
    ],
)
async def test_a_client_counts_only_when_its_connect_returned(
    listener: int, monkeypatch: pytest.MonkeyPatch, cut: bool, counts: bool
) -> None:
    transport = _Transport()
    loop = asyncio.get_running_loop()
    monkeypatch.setattr(loop, "create_connection", _answered(transport, cut=cut))
    client = await Generator().open_client(listener, "/ws", "t", None, limit_s=5.0)
    assert client.handshaken is counts
    assert client.status == (101 if counts else 0)
    assert transport.aborted is not counts
