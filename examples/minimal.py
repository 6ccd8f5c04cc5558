"""The seed's "Minimum setup", running on tempest_ws.

Only two things differ from the reference recipe: the import line (``from tempest_ws
import ...``) and the JWT helper, which is :func:`tempest_ws.jwt_bearer_resolver` wrapped
to return a ``UUID`` as the seed's resolver does. Everything else is the recipe verbatim.

Run it (``WS_JWT_SECRET`` must be at least 32 bytes; token subjects must be UUIDs)::

    WS_JWT_SECRET=change-me-to-32-bytes-or-more-please python -m examples.minimal
"""

from __future__ import annotations

# --8<-- [start:app]
from uuid import UUID

from fastapi import FastAPI, WebSocket

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    WSEnvelope,
    jwt_bearer_resolver,
    make_websocket_router,
)

ws_settings = WebSocketSettings()
hub = WebSocketHub(max_per_user=ws_settings.WS_MAX_CONNECTIONS_PER_USER)
# --8<-- [start:resolver]
verify_jwt = jwt_bearer_resolver(ws_settings)  # WS_JWT_SECRET / WS_JWT_ALGORITHMS / ...


async def bearer_resolver(token: str) -> UUID | None:
    """Decode JWT and return the subject (user id) — None on bad token."""
    subject = await verify_jwt(token)  # never raises: None for any invalid token
    if subject is None:
        return None
    try:
        return UUID(str(subject))
    except ValueError:  # a valid token whose subject is not a UUID
        return None
        # --8<-- [end:resolver]


async def handler(
    ws: WebSocket,
    connection: WebSocketConnection,
    hub: WebSocketHub,
) -> None:
    """Bidirectional loop — every connection runs this until disconnect."""
    while True:
        message = await ws.receive_json()
        envelope = WSEnvelope.model_validate(message)
        if envelope.type == "pong":
            continue  # heartbeat — handled by the router
        if envelope.type == "subscribe":
            await hub.subscribe(connection.connection_id, envelope.data["topic"])
            continue
        if envelope.type == "chat.message":
            # Broadcast to everyone subscribed to `chat:<room>`
            await hub.broadcast(
                WSEnvelope(
                    type="chat.message",
                    data={
                        "from": str(connection.user_id),
                        "text": envelope.data["text"],
                    },
                ),
                topic=envelope.data["room"],
            )


app = FastAPI()
app.include_router(
    make_websocket_router(
        handler,
        hub=hub,
        bearer_resolver=bearer_resolver,
        settings=ws_settings,
        path="/ws",
    )
)
# --8<-- [end:app]


if __name__ == "__main__":
    import logging

    from tempest_ws.server import run

    logging.basicConfig(level=logging.INFO)
    logging.getLogger(__name__).info("serving the minimal example on http://127.0.0.1:8000")
    run(app, settings=ws_settings)  # uvicorn with ws_max_size and no permessage-deflate
