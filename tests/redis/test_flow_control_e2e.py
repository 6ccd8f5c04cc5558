"""Flow control over real sockets: bursts never cost a fast reader its connection, and a
reader that stops is closed 1013 within its byte budget.

The servers run in their own processes (``tests.helpers.flow_control_app``) so its memory can be read
from ``/proc``; its producers are tight loops inside HTTP handlers. A stalled client is a
raw socket with a 4 KiB receive buffer that stops reading after the handshake; at the end
it reads what is left, which ends with the server's close frame.
"""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.helpers.hardening import RawClient
from tests.helpers.redis_server import RedisServer
from tests.helpers.server_process import ServerProcess
from tests.helpers.support import stalled_socket, token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

READERS = 50
BURST, TEXT = 4000, 4000  # 16 MB in one tight loop
STALLED = 100
BUDGET = 256 * 1024  # WS_SEND_QUEUE_BYTES of the memory test
FLOOD_ROUNDS, FLOOD_SIZE = 40, 65_000  # 40 x 64 KB per stalled socket: 10x its budget
# Besides its queue, a stalled connection holds what the transport buffers: up to its
# high-water mark (64 KiB) plus one more write (64 KiB, or one frame).
TRANSPORT = 64 * 1024 + max(64 * 1024, FLOOD_SIZE + 16)
SLACK = 16 * 1024 * 1024  # allocator and interpreter noise


def _env(monkeypatch: pytest.MonkeyPatch, **values: object) -> None:
    base = {
        "WS_CLOSE_TIMEOUT_SECONDS": 60,  # the close frame waits for the stalled reader
        "WS_HEARTBEAT_SECONDS": 600,
        "WS_HEARTBEAT_TIMEOUT_SECONDS": 1200,
        "WS_MAX_CONNECTIONS_PER_USER": 1,
    }
    for name, value in {**base, **values}.items():
        monkeypatch.setenv(name, str(value))


@pytest.fixture
def server() -> ServerProcess:
    return ServerProcess(module="tests.helpers.flow_control_app", start_timeout=60)


def _status(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"{field} not in /proc/{pid}/status")


async def _close_code(raw: socket.socket) -> int | None:
    """Read the stalled socket to its end: the code of the close frame that ends it."""
    reader, writer = await asyncio.open_connection(sock=raw)
    client = RawClient(reader, writer)
    try:
        _, close = await client.frames_until_close(timeout=60)
    finally:
        await client.close()
    return None if close is None else close.close_code


async def _stats(http: httpx.AsyncClient) -> dict[str, int]:
    response = await http.get("/stats")
    response.raise_for_status()
    stats: dict[str, int] = response.json()
    return stats


async def _until_stats(http: httpx.AsyncClient, key: str, value: int, timeout: float) -> None:
    stats: dict[str, int] = {}
    try:
        async with asyncio.timeout(timeout):
            while (stats := await _stats(http))[key] != value:
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"{key} never became {value}: {stats}") from None


async def _reader(ws: ClientConnection, count: int) -> list[int]:
    """Read ``flood`` envelopes as fast as they come; their ``i`` in arrival order."""
    got: list[int] = []
    while len(got) < count:
        envelope = json.loads(await ws.recv())
        if envelope["type"] == "flood":
            got.append(envelope["data"]["i"])
    return got


async def test_a_burst_never_closes_fast_readers_and_closes_the_stalled_one(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    timeout = 5.0
    _env(monkeypatch, WS_SLOW_CONSUMER_TIMEOUT_SECONDS=timeout)
    async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        readers = []
        for i in range(READERS):
            ws = await connect(
                server.ws_url,
                subprotocols=["bearer", token(f"r{i}")],  # type: ignore[list-item]
                max_size=None,
            )
            readers.append(ws)
        for ws in readers:
            async with asyncio.timeout(30):
                while json.loads(await ws.recv())["type"] != "subscribed":
                    pass
        raw = await stalled_socket(f"http://127.0.0.1:{server.port}", "stalled")
        await _until_stats(http, "subscriptions", READERS + 1, 30)

        reading = [asyncio.create_task(_reader(ws, BURST)) for ws in readers]
        response = await http.post("/burst", params={"count": BURST, "size": TEXT}, timeout=120)
        assert response.json() == {"sent": BURST}
        async with asyncio.timeout(120):
            results = await asyncio.gather(*reading)
        assert all(got == list(range(BURST)) for got in results)

        # The stalled socket is closed 1013 (its budget overflowed, or its queue sat
        # still for WS_SLOW_CONSUMER_TIMEOUT_SECONDS): every reader is still connected.
        await _until_stats(http, "slow_consumers_closed", 1, timeout + 10)
        stats = await _stats(http)
        assert stats["connections"] == READERS
        assert await _close_code(raw) == 1013
        for ws in readers:
            await ws.close()
        await _until_stats(http, "connections", 0, 30)


async def test_b_stalled_sockets_hold_at_most_their_byte_budget(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    _env(monkeypatch, WS_SEND_QUEUE_BYTES=BUDGET, WS_MAX_MESSAGE_BYTES=65536)
    async with server, httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as http:
        stalled = [
            await stalled_socket(f"http://127.0.0.1:{server.port}", f"s{u}") for u in range(STALLED)
        ]
        await _until_stats(http, "subscriptions", STALLED, 30)
        await http.post("/trim")
        before = _status(server.pid, "VmRSS")

        response = await http.post(
            "/flood",
            params={"users": STALLED, "rounds": FLOOD_ROUNDS, "size": FLOOD_SIZE},
            timeout=120,
        )
        response.raise_for_status()
        await _until_stats(http, "slow_consumers_closed", STALLED, 60)
        peak = _status(server.pid, "VmHWM")  # the highest RSS the process ever had
        assert peak - before <= STALLED * (BUDGET + TRANSPORT) + SLACK, (before, peak)

        codes = await asyncio.gather(*(_close_code(raw) for raw in stalled))
        assert codes == [1013] * STALLED
        await _until_stats(http, "connections", 0, 30)
        await http.post("/trim")
        after = _status(server.pid, "VmRSS")
        assert after - before <= SLACK, (before, after)


@pytest.mark.redis
async def test_c_a_burst_from_another_node_never_closes_fast_readers(
    monkeypatch: pytest.MonkeyPatch, redis: RedisServer
) -> None:
    """Node A (no subscribers) bursts; node B's readers get it through Redis."""
    count, readers = 2000, 20
    _env(monkeypatch, WS_REDIS_URL=redis.url)
    publisher = ServerProcess(module="tests.helpers.flow_control_app", start_timeout=60)
    receiver = ServerProcess(module="tests.helpers.flow_control_app", start_timeout=60)
    async with publisher, receiver:
        base = f"http://127.0.0.1:{receiver.port}"
        async with httpx.AsyncClient(base_url=base) as http:
            clients = []
            for i in range(readers):
                ws = await connect(
                    receiver.ws_url,
                    subprotocols=["bearer", token(f"r{i}")],  # type: ignore[list-item]
                    max_size=None,
                )
                clients.append(ws)
                async with asyncio.timeout(30):
                    while json.loads(await ws.recv())["type"] != "subscribed":
                        pass
            reading = [asyncio.create_task(_reader(ws, count)) for ws in clients]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{publisher.port}") as a:
                response = await a.post(
                    "/burst", params={"count": count, "size": TEXT}, timeout=120
                )
            assert response.json() == {"sent": count}
            async with asyncio.timeout(120):
                results = await asyncio.gather(*reading)
            assert all(got == list(range(count)) for got in results)
            stats = await _stats(http)
            assert (stats["connections"], stats["slow_consumers_closed"]) == (readers, 0)
            for ws in clients:
                await ws.close()
