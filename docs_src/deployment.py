"""docs/deployment.md: a draining server with your own ``uvicorn.Config``, and health routes.

``python -m docs_src.deployment PORT`` serves :data:`app` on ``127.0.0.1:PORT`` the way
the page shows; SIGTERM drains it (clients are closed 1001 with a reason) before uvicorn stops.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI, WebSocket

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.server import uvicorn_options


async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """Waits for the client's messages (and ignores them) until the connection ends."""
    while True:
        await ws.receive_json()


settings = WebSocketSettings()
hub = WebSocketHub.from_settings(settings)
router = make_websocket_router(
    handler, hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
)
app = FastAPI()
app.include_router(router)

# --8<-- [start:health]
from fastapi import Response  # noqa: E402


@app.get("/healthz")
async def healthz() -> dict[str, int]:
    """Liveness: the event loop answers."""
    stats = hub.stats()
    return {"connections": stats.connections, "users": stats.users}


@app.get("/readyz")
async def readyz(response: Response) -> dict[str, bool]:
    """Readiness: false while draining, so the balancer stops sending clients here."""
    if router.draining:
        response.status_code = 503
    return {"ready": not router.draining}


# --8<-- [end:health]


def main(port: int) -> None:
    """Serve :data:`app` on ``127.0.0.1:port`` until SIGTERM, draining first."""
    # --8<-- [start:server]
    from tempest_ws.shutdown import DrainingServer

    config = uvicorn.Config(app, host="127.0.0.1", port=port, **uvicorn_options(settings))
    server = DrainingServer(config, drain=router, grace=10)
    server.run()
    # --8<-- [end:server]


if __name__ == "__main__":
    main(int(sys.argv[1]))
