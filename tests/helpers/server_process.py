"""A tempest_ws app for the client tests, in-process or in a separate OS process.

``build_client_app`` gives the app whose handler the client tests talk to. Run as
``python -m tests.helpers.server_process --port N`` it serves that app under uvicorn on
127.0.0.1 and prints ``READY <port>`` once it accepts connections. `ServerProcess`
starts such a process, kills it by PID (SIGKILL: no close frame reaches the client) and
starts it again on the same port.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, WebSocket

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tests.helpers.support import make_settings

ROOT = Path(__file__).resolve().parents[2]
Handler = Callable[[WebSocket, WebSocketConnection, WebSocketHub], Awaitable[None]]


def make_handler(received: list[Any] | None = None) -> Handler:
    """A handler for the client tests.

    ``subscribe``/``unsubscribe`` (``subscribe`` is answered with ``subscribed``, with
    the request's ``request_id``), ``publish`` (to a
    topic), ``echo`` (reply with the same ``request_id``), ``hold``/``release`` (replies
    held back, each acknowledged by an uncorrelated ``holding``, then sent in reverse
    order), ``note`` (appends ``data`` to
    ``received``), ``resync_me`` (a ``resync`` envelope back) and ``close`` (close with
    ``data.code``).
    """
    held: list[tuple[str | None, Any]] = []

    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        while True:
            message = await ws.receive_json()
            kind, data = message["type"], message.get("data") or {}
            request_id = message.get("request_id")
            if kind == "subscribe":
                await hub.subscribe(connection.connection_id, data["topic"])
                subscribed = {"type": "subscribed", "data": {"topic": data["topic"]}}
                await ws.send_json({**subscribed, "request_id": request_id})
            elif kind == "unsubscribe":
                await hub.unsubscribe(connection.connection_id, data["topic"])
            elif kind == "publish":
                await hub.broadcast(
                    {"type": "published", "data": data.get("payload")}, topic=data.get("topic")
                )
            elif kind == "echo":
                await ws.send_json({"type": "echo", "data": data, "request_id": request_id})
            elif kind == "hold":
                held.append((request_id, data))
                await ws.send_json({"type": "holding", "data": {"count": len(held)}})
            elif kind == "release":
                while held:
                    held_id, held_data = held.pop()
                    await ws.send_json({"type": "held", "data": held_data, "request_id": held_id})
                await ws.send_json({"type": "released", "data": {}, "request_id": request_id})
            elif kind == "note" and received is not None:
                received.append(data)
            elif kind == "resync_me":
                await ws.send_json({"type": "resync", "data": {"reason": "test"}})
            elif kind == "close":
                await ws.close(code=int(data["code"]))
                return

    return handler


def build_client_app(
    settings: WebSocketSettings, *, received: list[Any] | None = None
) -> tuple[FastAPI, WebSocketHub]:
    """The app the client tests talk to: the router at ``/ws`` with `make_handler()`."""
    hub = WebSocketHub.from_settings(settings)
    app = FastAPI()
    app.include_router(
        make_websocket_router(
            make_handler(received),
            hub=hub,
            bearer_resolver=jwt_bearer_resolver(settings),
            settings=settings,
        )
    )
    return app, hub


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """The client-test app in its own process; ``kill`` is SIGKILL by PID.

    ``module`` is the test module run with ``--port N`` (one built on
    `serve_forever()`); the default serves `build_client_app()`.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        start_timeout: float = 45.0,
        module: str = "tests.helpers.server_process",
    ) -> None:
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.module = module
        self._process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int:
        """The PID of the running process."""
        if self._process is None:
            raise RuntimeError("not running")
        return self._process.pid

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def start(self) -> None:
        """Start the process on `port` and wait for its ``READY`` line."""
        if self._process is not None:
            raise RuntimeError("already running")
        process = subprocess.Popen(  # noqa: ASYNC220 - only spawned; waited on in a thread
            [sys.executable, "-m", self.module, "--port", str(self.port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._process = process
        assert process.stdout is not None
        try:
            async with asyncio.timeout(self.start_timeout):
                for _ in range(100):  # uvicorn prints nothing on stdout; our line comes first
                    line = await asyncio.to_thread(process.stdout.readline)
                    if not line:
                        raise RuntimeError(f"server process exited with {process.wait()}")
                    if line.strip() == f"READY {self.port}":
                        return
                raise RuntimeError("server process printed no READY line")
        except BaseException:
            await self.kill()
            raise

    async def kill(self) -> None:
        """SIGKILL the process by its PID and reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        await asyncio.to_thread(process.wait, 30)
        if process.stdout is not None:
            process.stdout.close()

    async def __aenter__(self) -> ServerProcess:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.kill()


async def serve_forever(port: int, build: Callable[[WebSocketSettings], FastAPI]) -> None:
    """Serve ``build(settings)`` under uvicorn on 127.0.0.1:``port``; print ``READY <port>``."""
    import uvicorn

    from tempest_ws import uvicorn_options

    settings = make_settings()
    app = build(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    config = uvicorn.Config(app, log_level="warning", **uvicorn_options(settings))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    for _ in range(3000):  # up to ~60 s
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    if not server.started:
        raise SystemExit("uvicorn did not start")
    sys.stdout.write(f"READY {port}\n")
    sys.stdout.flush()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    asyncio.run(serve_forever(port, lambda settings: build_client_app(settings)[0]))


if __name__ == "__main__":
    main()
