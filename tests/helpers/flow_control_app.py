"""The app of the flow-control tests, served in its own process.

``python -m tests.helpers.flow_control_app --port N`` serves it under uvicorn (see
`tests.helpers.server_process.serve_forever()`); its settings come from the ``WS_*``
environment variables the test sets. The server's kernel send buffer of a user whose
name starts with ``s`` (a stalled client) is 16 KiB, as on a slow path, instead of the
several MB loopback grows it to. Every connection is subscribed to ``firehose``
and told so with a ``subscribed`` envelope. HTTP endpoints drive the producers from
inside the server: ``POST /burst`` broadcasts ``count`` messages to ``firehose`` in a
tight loop, ``POST /flood`` sends ``rounds`` messages to each of ``users`` users (a
different frame per user), ``GET /stats`` returns the hub's counters and ``POST /trim``
collects garbage and hands freed heap memory back to the system.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import dataclasses
import gc
import socket
from typing import Any

from fastapi import FastAPI, WebSocket

from tempest_ws import WebSocketConnection, WebSocketHub, WebSocketSettings, WSEnvelope
from tests.helpers.server_process import serve_forever
from tests.helpers.support import build_app, make_settings

TOPIC = "firehose"


def build(_: WebSocketSettings) -> FastAPI:
    settings = make_settings()  # the WS_* variables of the environment apply
    hub = WebSocketHub.from_settings(settings)

    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        if connection.user_key.startswith("s"):  # a stalled client: a small kernel buffer
            transport = connection._transport  # a test knob
            sock = None if transport is None else transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        await hub.subscribe(connection.connection_id, TOPIC)
        await hub.send_to_connection(connection.connection_id, {"type": "subscribed"})
        while True:
            await ws.receive_text()

    app, _ = build_app(settings, handler=handler, hub=hub)

    @app.post("/burst")
    async def burst(count: int = 4000, size: int = 4000) -> dict[str, int]:
        text = "z" * size
        for i in range(count):  # no sleep: the loop yields only if the hub makes it
            await hub.broadcast(WSEnvelope(type="flood", data={"i": i, "text": text}), topic=TOPIC)
        return {"sent": count}

    @app.post("/flood")
    async def flood(users: int, rounds: int, size: int = 65_000) -> dict[str, int]:
        queued, pad = 0, "y" * size
        for r in range(rounds):
            for u in range(users):  # each send serializes its own frame
                queued += await hub.send_to(
                    f"s{u}", {"type": "flood", "data": {"r": r, "pad": pad}}
                )
        return {"queued": queued}

    @app.get("/stats")
    async def stats() -> dict[str, Any]:
        return dataclasses.asdict(hub.stats())

    @app.post("/trim")
    async def trim() -> dict[str, bool]:
        gc.collect()
        name = ctypes.util.find_library("c")
        trimmed = bool(name) and bool(ctypes.CDLL(name).malloc_trim(0))
        return {"trimmed": trimmed}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve_forever(parser.parse_args().port, build))


if __name__ == "__main__":
    main()
