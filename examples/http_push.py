"""HTTP handlers pushing to WebSocket clients through the hub.

Clients connect to ``/ws`` and subscribe to topics; ordinary HTTP endpoints deliver to
them: ``POST /users/{user_id}/notify`` reaches every tab of one user,
``POST /topics/{topic}/publish`` every subscriber of a topic and ``POST /announce``
everyone (optionally minus one user). Each endpoint answers with how many connections
the frame was queued for. The hub is reachable from any ``async def`` endpoint of the
same process: it never waits for a socket, so a slow client cannot slow the endpoint.

Run it::

    WS_JWT_SECRET=change-me-to-32-bytes-or-more-please python -m examples.http_push
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, Request, WebSocket

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    WSEnvelope,
    jwt_bearer_resolver,
    make_websocket_router,
)

logger = logging.getLogger(__name__)


# --8<-- [start:handler]
async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """Let the client manage its subscriptions; every push comes from HTTP endpoints."""
    while True:
        envelope = WSEnvelope.model_validate(await ws.receive_json())
        topic = envelope.data.get("topic") if isinstance(envelope.data, dict) else None
        if envelope.type in ("subscribe", "unsubscribe") and isinstance(topic, str):
            if envelope.type == "subscribe":
                await hub.subscribe(connection.connection_id, topic)
            else:
                await hub.unsubscribe(connection.connection_id, topic)
            # connection.send queues the reply behind earlier pushes: order is kept.
            await connection.send(
                WSEnvelope(
                    type=f"{envelope.type}d",  # "subscribed" / "unsubscribed"
                    data={"topic": topic},
                    request_id=envelope.request_id,
                )
            )
        else:
            await connection.send(
                WSEnvelope(
                    type="error",
                    data={"code": "unknown_type", "message": f"cannot handle {envelope.type!r}"},
                    request_id=envelope.request_id,
                )
            )


# --8<-- [end:handler]


# --8<-- [start:routes]
def get_hub(request: Request) -> WebSocketHub:
    """The hub this app was built with (a FastAPI dependency)."""
    hub: WebSocketHub = request.app.state.hub
    return hub


Hub = Annotated[WebSocketHub, Depends(get_hub)]
Payload = Annotated[dict[str, Any], Body()]


def create_app(settings: WebSocketSettings) -> FastAPI:
    """The app: the WebSocket endpoint at ``/ws`` and three push endpoints."""
    hub = WebSocketHub.from_settings(settings)
    app = FastAPI()
    app.state.hub = hub
    app.include_router(
        make_websocket_router(
            handler, hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
        )
    )

    @app.post("/users/{user_id}/notify")
    async def notify(user_id: str, payload: Payload, hub: Hub) -> dict[str, int]:
        """Every open tab of ``user_id`` gets a ``notification``."""
        delivered = await hub.send_to(user_id, WSEnvelope(type="notification", data=payload))
        return {"delivered": delivered}

    @app.post("/topics/{topic}/publish")
    async def publish(topic: str, payload: Payload, hub: Hub) -> dict[str, int]:
        """Every subscriber of ``topic`` gets an ``event``; nobody else does."""
        delivered = await hub.broadcast(
            WSEnvelope(type="event", data={"topic": topic, "payload": payload}), topic=topic
        )
        return {"delivered": delivered}

    @app.post("/announce")
    async def announce(
        payload: Payload, hub: Hub, exclude_user: str | None = None
    ) -> dict[str, int]:
        """Everyone connected gets an ``announcement``, except ``exclude_user``'s tabs."""
        delivered = await hub.broadcast(
            {"type": "announcement", "data": payload},  # a plain dict works too
            exclude_users=exclude_user,
        )
        return {"delivered": delivered}

    @app.get("/online")
    async def online(hub: Hub) -> dict[str, Any]:
        """Who is connected to this process, and the hub's counters."""
        return {"users": sorted(await hub.online_users()), "connections": hub.stats().connections}

    return app


# --8<-- [end:routes]


if __name__ == "__main__":
    from tempest_ws.server import run

    logging.basicConfig(level=logging.INFO)
    settings = WebSocketSettings()
    logger.info("serving the HTTP push example on http://127.0.0.1:8000")
    run(create_app(settings), settings=settings)
