"""Graceful shutdown: 1012 from plain uvicorn, 1001 with a reason from the drain.

The in-process tests drive `WebSocketRouter.drain()` directly. The SIGTERM tests run
this very module as a real uvicorn process (``python -m tests.e2e.test_hardening_shutdown``),
stop it by its PID with SIGTERM and read what clients saw and what the process left
behind: after the server returns, the process prints the tasks still alive in its loop,
and any tempest_ws task there (or "Task was destroyed", or a traceback) fails the test.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tempest_ws import CloseCode
from tempest_ws.router import DRAIN_REASON
from tempest_ws.testing import serve
from tests.helpers.hardening import (
    BOUND,
    RawClient,
    build_router_app,
    next_of_type,
    tempest_tasks,
    until_closed,
)
from tests.helpers.support import SECRET, make_settings, token, until, ws_url

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


# -- in process ------------------------------------------------------------------------


async def test_drain_flushes_then_closes_1001_and_refuses_newcomers() -> None:
    settings = make_settings()
    app, hub, router = build_router_app(settings)
    async with serve(app, settings=settings) as base:
        url = ws_url(base)
        clients = [
            await connect(url, subprotocols=["bearer", token(f"u{i}")])  # type: ignore[list-item]
            for i in range(3)
        ]
        for ws in clients:
            await next_of_type(ws, "hello")
        for i in range(200):  # queued or in flight when the drain starts
            await hub.broadcast({"type": "tick", "data": i})
        assert await router.drain(grace=BOUND) == 3
        assert router.draining
        for ws in clients:
            seen, code, reason = await until_closed(ws)
            assert [e["data"] for e in seen if e["type"] == "tick"] == list(range(200))
            assert (code, reason) == (CloseCode.GOING_AWAY, DRAIN_REASON)
        assert hub.stats().connections == 0
        assert router.connection_count() == 0
        async with connect(url, subprotocols=["bearer", token("late")]) as late:  # type: ignore[list-item]
            seen, code, reason = await until_closed(late)
        assert (seen, code, reason) == ([], CloseCode.GOING_AWAY, DRAIN_REASON)
        await until(lambda: tempest_tasks() == [])


async def test_drain_is_bounded_by_its_grace_even_for_a_stalled_reader() -> None:
    settings = make_settings(WS_CLOSE_TIMEOUT_SECONDS=30, WS_SEND_QUEUE_SIZE=100_000)
    app, hub, router = build_router_app(settings)
    async with serve(app, settings=settings) as base:
        stalled = await RawClient.connect(base, token=token("stalled"))
        assert stalled.status == 101
        await until(lambda: hub.stats().connections == 1)
        for _ in range(2000):  # far more than the socket buffers hold: never read
            await hub.broadcast({"type": "pad", "data": "x" * 4000})
        assert await router.drain(grace=0.5) == 1
        # 0.5 s of grace, not the 30 s close timeout: the connection was aborted.
        await until(lambda: hub.stats().connections == 0)
        await until(lambda: tempest_tasks() == [])
        await stalled.close()


# -- a real uvicorn process, stopped by SIGTERM ----------------------------------------


@contextlib.asynccontextmanager
async def server_process(mode: str, port: int = 0) -> AsyncIterator[tuple[Any, int]]:
    """Run this module as a uvicorn server; yield (process, port). Killed by PID if left."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-m",
        "tests.e2e.test_hardening_shutdown",
        mode,
        "--port",
        str(port),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), BOUND)
        assert line, "the server process exited before listening"
        yield process, json.loads(line)["port"]
    finally:
        if process.returncode is None:
            process.kill()  # only reached when the test failed: never leave it running
            await process.wait()


async def stop_and_collect(process: Any) -> tuple[list[str], str]:
    """SIGTERM by PID; wait for exit; return (leftover task names, stderr)."""
    os.kill(process.pid, signal.SIGTERM)
    out, err = await asyncio.wait_for(process.communicate(), BOUND * 2)
    assert process.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])
    return report["leftover"], err.decode()


def assert_clean_exit(leftover: list[str], stderr: str) -> None:
    assert [name for name in leftover if name.startswith("tempest_ws")] == []
    for marker in ("Task was destroyed", "Traceback", "never awaited", "Warning"):
        assert marker not in stderr, stderr


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("plain", (CloseCode.SERVICE_RESTART, "")),
        ("drain", (CloseCode.GOING_AWAY, DRAIN_REASON)),
    ],
    ids=["plain-uvicorn-1012", "draining-server-1001"],
)
async def test_sigterm_close_codes(mode: str, expected: tuple[int, str]) -> None:
    async with server_process(mode) as (process, port):
        url = f"ws://127.0.0.1:{port}/ws"
        clients = [
            await connect(url, subprotocols=["bearer", token(f"u{i}")], open_timeout=BOUND)  # type: ignore[list-item]
            for i in range(3)
        ]
        for ws in clients:
            await next_of_type(ws, "hello")
        leftover, stderr = await stop_and_collect(process)
        for ws in clients:
            _, code, reason = await until_closed(ws)
            assert (code, reason) == expected
    assert_clean_exit(leftover, stderr)


async def test_documented_example_drains_on_sigterm() -> None:
    """``examples/graceful_shutdown.py``, run as documented, stopped by its PID."""
    with socket.socket() as probe:  # a free port for the example's fixed-port run()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "WS_JWT_SECRET": SECRET, "PORT": str(port)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-m",
        "examples.graceful_shutdown",
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        ws = None
        async with asyncio.timeout(BOUND):
            while ws is None:  # the example opens its port when it is ready
                try:
                    ws = await connect(
                        f"ws://127.0.0.1:{port}/ws", subprotocols=["bearer", token()]
                    )  # type: ignore[list-item]
                except OSError:
                    await asyncio.sleep(0.05)
        await next_of_type(ws, "hello")
        await ws.send(json.dumps({"type": "hi"}))
        assert (await next_of_type(ws, "echo"))["data"] == {"type": "hi"}
        os.kill(process.pid, signal.SIGTERM)
        _, code, reason = await until_closed(ws)
        assert (code, reason) == (CloseCode.GOING_AWAY, DRAIN_REASON)
        _, err = await asyncio.wait_for(process.communicate(), BOUND * 2)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    # uvicorn re-raises SIGTERM once its graceful shutdown is over.
    assert process.returncode in (0, -signal.SIGTERM), err.decode()
    stderr = err.decode()
    assert "drained 1 WebSocket connection(s)" in stderr or "Shutting down" in stderr
    for marker in ("Task was destroyed", "Traceback", "never awaited"):
        assert marker not in stderr, stderr


async def test_reconnecting_client_comes_back_after_a_restart() -> None:
    from tempest_ws.client import WebSocketClient
    from tempest_ws.client._backoff import Backoff, Disconnect

    connects = 0
    disconnects: list[Disconnect] = []

    def on_connect() -> None:
        nonlocal connects
        connects += 1

    async with server_process("drain") as (first, port):
        client = WebSocketClient(
            f"ws://127.0.0.1:{port}/ws",
            token=token("returning"),
            backoff=Backoff(0.05, 0.3, 2),
            long_backoff=Backoff(0.05, 0.3, 2),
            on_connect=on_connect,
            on_disconnect=disconnects.append,
        )
        try:
            await asyncio.wait_for(client.connect(), BOUND)
            leftover, stderr = await stop_and_collect(first)
            assert_clean_exit(leftover, stderr)
            await until(lambda: not client.connected, timeout=BOUND)
            async with server_process("drain", port) as (second, same_port):
                assert same_port == port
                await until(lambda: connects == 2, timeout=BOUND)
                assert client.connected
                await client.close()
                leftover, stderr = await stop_and_collect(second)
        finally:
            await client.close()
    assert_clean_exit(leftover, stderr)
    session_ends = [d for d in disconnects if d.stage == "session" and not d.by_user]
    assert session_ends[0].code == CloseCode.GOING_AWAY


# -- the server process ----------------------------------------------------------------


def _serve(mode: str, port: int) -> None:
    import uvicorn

    from tempest_ws.server import uvicorn_options
    from tempest_ws.shutdown import DrainingServer

    settings = make_settings(WS_DRAIN_TIMEOUT_SECONDS=5)
    app, _hub, router = build_router_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **uvicorn_options(settings))
    server: uvicorn.Server
    if mode == "drain":
        server = DrainingServer(config, drain=router, grace=settings.WS_DRAIN_TIMEOUT_SECONDS)
    else:
        server = uvicorn.Server(config)
    # uvicorn re-raises the signal after its graceful shutdown, with the handler it found
    # installed: a no-op here lets the process report its leftovers and exit 0.
    signal.signal(signal.SIGTERM, lambda *_: None)

    def report(line: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(line) + "\n")
        sys.stdout.flush()

    async def main() -> None:
        report({"port": sock.getsockname()[1]})
        await server.serve(sockets=[sock])
        current = asyncio.current_task()
        leftover = [t.get_name() for t in asyncio.all_tasks() if t is not current]
        report({"leftover": leftover})

    asyncio.run(main())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["plain", "drain"])
    parser.add_argument("--port", type=int, default=0)
    arguments = parser.parse_args()
    _serve(arguments.mode, arguments.port)
