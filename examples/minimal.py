"""The seed's "Minimum setup", running on tempest_ws, with its topics closed.

Three things differ from the reference recipe: the import line (``from tempest_ws import
...``), the JWT helper, which is `tempest_ws.jwt_bearer_resolver()` wrapped to return
a ``UUID`` as the seed's resolver does, and who may subscribe to what. The recipe lets
anyone subscribe and post to any topic; here a ``topic_authorizer`` admits a user to
their own inbox (``inbox:<user id>``), to ``room:lobby`` and to the other rooms they are
a member of (``room:<name>``), a user posts only to rooms they joined, and malformed
``data`` gets an ``error`` envelope instead of ending the connection.

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
MAX_TOPIC = 256  # the hub refuses longer topic names
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


# --8<-- [start:authorizer]
OPEN_ROOMS = frozenset({"lobby"})  # every signed-in user may join these
room_members: dict[str, set[UUID]] = {}
"""Who is in which other room. Your database answers this; a dict stands in for it."""


def may_subscribe(connection: WebSocketConnection, topic: str) -> bool:
    """Your own ``inbox:<user id>``, the open rooms and the rooms you are a member of."""
    kind, _, name = topic.partition(":")
    if kind == "inbox":
        return name == connection.user_key
    if kind == "room":
        return name in OPEN_ROOMS or connection.user_id in room_members.get(name, set())
    return False  # every other topic is closed


# --8<-- [end:authorizer]


async def handler(
    ws: WebSocket,
    connection: WebSocketConnection,
    hub: WebSocketHub,
) -> None:
    """Bidirectional loop — every connection runs this until disconnect."""
    cid = connection.connection_id
    while True:
        message = await ws.receive_json()  # the router let only valid envelopes through
        envelope = WSEnvelope.model_validate(message)
        data = envelope.data if isinstance(envelope.data, dict) else {}
        if envelope.type == "pong":
            continue  # heartbeat — handled by the router
        if envelope.type == "subscribe":
            topic = data.get("topic")
            if not isinstance(topic, str) or not 0 < len(topic) <= MAX_TOPIC:
                await hub.reply_error(cid, envelope, "invalid_data", "data.topic: a topic name")
            elif not await hub.subscribe(cid, topic):  # may_subscribe said no
                await hub.reply_error(cid, envelope, "forbidden", "not your topic")
            continue
        if envelope.type == "chat.message":
            room, text = data.get("room"), data.get("text")
            if not isinstance(room, str) or not isinstance(text, str):
                await hub.reply_error(cid, envelope, "invalid_data", "data.room, data.text: text")
            elif f"room:{room}" not in connection.topics:
                await hub.reply_error(cid, envelope, "not_subscribed", "join the room first")
            else:
                # Broadcast to everyone subscribed to `room:<room>`
                await hub.broadcast(
                    WSEnvelope(
                        type="chat.message",
                        data={"from": str(connection.user_id), "text": text},
                    ),
                    topic=f"room:{room}",
                )
            continue
        await hub.reply_error(cid, envelope, "unknown_type", "no such message type")


app = FastAPI()
app.include_router(
    make_websocket_router(
        handler,
        hub=hub,
        bearer_resolver=bearer_resolver,
        settings=ws_settings,
        path="/ws",
        topic_authorizer=may_subscribe,  # asked before every subscription
    )
)
# --8<-- [end:app]


if __name__ == "__main__":
    import logging

    from tempest_ws.server import run

    logging.basicConfig(level=logging.INFO)
    logging.getLogger(__name__).info("serving the minimal example on http://127.0.0.1:8000")
    run(app, settings=ws_settings)  # uvicorn with ws_max_size and no permessage-deflate
