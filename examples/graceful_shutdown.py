"""Graceful shutdown: clients get 1001 and a reason, not uvicorn's bare 1012.

Run it (``WS_JWT_SECRET`` must be at least 32 bytes)::

    WS_JWT_SECRET=change-me-to-32-bytes-or-more-please python -m examples.graceful_shutdown

then stop it with Ctrl+C or ``kill -TERM <pid>``: every client is closed 1001 with the
reason ``server shutting down``, after the frames already queued for it, and only then
does uvicorn shut down. ``tests/e2e/test_hardening_shutdown.py`` runs this file as a real
process and stops it by its PID.
"""

from __future__ import annotations

# --8<-- [start:app]
import os

from fastapi import FastAPI, WebSocket

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
    shutdown,
)

settings = WebSocketSettings()
hub = WebSocketHub.from_settings(settings)


async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """Echo every envelope back to its sender."""
    while True:
        await ws.send_json({"type": "echo", "data": await ws.receive_json()})


router = make_websocket_router(  # keep the router: it is what drains
    handler, hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
)
app = FastAPI()
app.include_router(router)

if __name__ == "__main__":
    # uvicorn with ws_max_size, no permessage-deflate, and a drain of up to
    # WS_DRAIN_TIMEOUT_SECONDS before its own shutdown.
    shutdown.run(app, settings=settings, drain=router, port=int(os.environ.get("PORT", "8000")))
# --8<-- [end:app]
