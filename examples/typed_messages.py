"""Typed messages: pydantic models per envelope type, and the AsyncAPI document they make.

Clients join the rooms they are members of (``room.join``) and post lines to rooms they
joined (``chat.send``); everyone in the room gets a ``chat.message``. Joining a room you
are not a member of, or posting to one you did not join, gets an ``error`` envelope.
Every inbound envelope is validated against its model by ``messages.parse``: an unknown
type or invalid data gets an ``error`` envelope with the client's ``request_id`` and the
connection stays open. The AsyncAPI 3.0 document of the
endpoint is served at ``/ws/asyncapi.json``.

Run it::

    WS_JWT_SECRET=change-me-to-32-bytes-or-more-please python -m examples.typed_messages
    curl -s http://127.0.0.1:8000/ws/asyncapi.json
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

# --8<-- [start:models]
from typing import Annotated

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, Field

from tempest_ws import (
    EnvelopeError,
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    WSEnvelope,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.asyncapi import add_asyncapi_route
from tempest_ws.messages import MessageRegistry

messages = MessageRegistry()

RoomName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9-]+$")]


@messages.inbound("room.join")
class RoomJoin(BaseModel):
    """Join a room: receive every line posted to it from now on."""

    room: RoomName


@messages.inbound("chat.send")
class ChatSend(BaseModel):
    """Post a line to a room."""

    room: RoomName
    text: str = Field(min_length=1, max_length=500)


@messages.outbound("room.joined")
class RoomJoined(BaseModel):
    """The join worked; lines posted to the room follow."""

    room: str


@messages.outbound("chat.message")
class ChatMessage(BaseModel):
    """A line posted to a room you joined."""

    room: str
    sender: str = Field(description="The user id of the poster.")
    text: str


# --8<-- [end:models]


# --8<-- [start:handler]
async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """Validate each envelope against its model, then act on the typed message."""
    while True:
        envelope = WSEnvelope.model_validate(await ws.receive_json())
        try:
            message = messages.parse(envelope)
        except EnvelopeError as exc:  # unknown_type or invalid_data: say why, keep going
            await connection.send(
                WSEnvelope(
                    type="error",
                    data={"code": exc.code, "message": exc.reason},
                    request_id=envelope.request_id,
                )
            )
            continue
        match message:
            case RoomJoin(room=room):
                # The topic authorizer decides: False means not a member.
                if not await hub.subscribe(connection.connection_id, f"room:{room}"):
                    await hub.reply_error(connection.connection_id, envelope, "forbidden", room)
                    continue
                reply = messages.envelope(RoomJoined(room=room), request_id=envelope.request_id)
                await connection.send(reply)
            case ChatSend(room=room, text=text):
                if f"room:{room}" not in connection.topics:
                    await hub.reply_error(
                        connection.connection_id, envelope, "not_subscribed", "join first"
                    )
                    continue
                # --8<-- [start:broadcast]
                line = ChatMessage(room=room, sender=connection.user_key, text=text)
                await hub.broadcast(messages.envelope(line), topic=f"room:{room}")
                # --8<-- [end:broadcast]


# --8<-- [end:handler]


# --8<-- [start:app]
def create_app(
    settings: WebSocketSettings, *, rooms: Mapping[str, Collection[str]] | None = None
) -> FastAPI:
    """The app: the endpoint at ``/ws`` and its AsyncAPI document next to it.

    ``rooms`` maps a room name to the user ids of its members (your database, in a
    real app); a user joins only the rooms they are a member of.
    """
    members = rooms if rooms is not None else {}

    def may_join(connection: WebSocketConnection, topic: str) -> bool:
        kind, _, name = topic.partition(":")
        return kind == "room" and connection.user_key in members.get(name, ())

    hub = WebSocketHub.from_settings(settings)
    router = make_websocket_router(
        handler,
        hub=hub,
        bearer_resolver=jwt_bearer_resolver(settings),
        settings=settings,
        topic_authorizer=may_join,
    )
    add_asyncapi_route(  # GET /ws/asyncapi.json
        router,
        messages,
        settings=settings,
        title="Rooms chat",
        version="1.0.0",
        servers={"local": "ws://127.0.0.1:8000"},
    )
    app = FastAPI()
    app.state.hub = hub
    app.include_router(router)
    return app


# --8<-- [end:app]


if __name__ == "__main__":
    from tempest_ws.server import run

    logging.basicConfig(level=logging.INFO)
    settings = WebSocketSettings()
    logging.getLogger(__name__).info("AsyncAPI at http://127.0.0.1:8000/ws/asyncapi.json")
    run(create_app(settings), settings=settings)
