"""docs/events.md, first steps: a handler with a validated model and a typed reply."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel, Field

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)


# --8<-- [start:models]
class ChatSend(BaseModel):
    room: str
    text: str = Field(max_length=2000)


class ChatSent(BaseModel):
    room: str
    sender: str
    text: str


# --8<-- [end:models]


def create_app(settings: WebSocketSettings) -> FastAPI:
    """An app whose only handler answers ``chat.send``."""
    # --8<-- [start:router]
    hub = WebSocketHub.from_settings(settings)
    router = make_websocket_router(
        hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
    )

    @router.on("chat.send")
    async def chat_send(message: ChatSend, connection: WebSocketConnection) -> ChatSent:
        """Post a message to a room."""
        return ChatSent(room=message.room, sender=connection.user_key, text=message.text)

    app = FastAPI()
    app.include_router(router)
    # --8<-- [end:router]
    return app
