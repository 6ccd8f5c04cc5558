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


async def test_a_connect_cut_by_its_timeout_is_a_failure_even_if_the_answer_came(
    listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The timeout cancels create_connection right after connection_made, in the tick
    # the server's 101 arrives: the protocol saw an open, answered connection, but the
    # transport is gone (uvloop never calls connection_lost for it).
    transport = _Transport()

    async def cut(factory: Callable[[], asyncio.Protocol], sock: socket.socket) -> Any:
        protocol = factory()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(ANSWER)  # type: ignore[attr-defined]
        sock.close()
        raise TimeoutError

    monkeypatch.setattr(asyncio.get_running_loop(), "create_connection", cut)
    client = await Generator().open_client(listener, "/ws", "t", None, limit_s=5.0)
    assert not client.handshaken
    assert client.status == 0
    assert transport.aborted


async def test_a_connect_that_returned_and_got_its_answer_counts(
    listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    transport = _Transport()

    async def opened(factory: Callable[[], asyncio.Protocol], sock: socket.socket) -> Any:
        protocol = factory()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        protocol.data_received(ANSWER)  # type: ignore[attr-defined]
        sock.close()
        return transport, protocol

    monkeypatch.setattr(asyncio.get_running_loop(), "create_connection", opened)
    client = await Generator().open_client(listener, "/ws", "t", None, limit_s=5.0)
    assert client.handshaken
    assert client.status == 101
    assert not transport.aborted
