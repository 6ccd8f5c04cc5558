"""docs/events.md, errors: WebSocketError, no reply, and what an exception does."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

from tempest_ws import (
    WebSocketConnection,
    WebSocketError,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)


class RoomJoin(BaseModel):
    room: str


def create_app(settings: WebSocketSettings, *, rooms: dict[str, set[str]]) -> FastAPI:
    """``room.join`` refuses users who are not members; ``room.leave`` replies nothing."""
    hub = WebSocketHub.from_settings(settings)
    router = make_websocket_router(
        hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
    )

    # --8<-- [start:handlers]
    @router.on("room.join", errors=["not_member"])
    async def room_join(message: RoomJoin, connection: WebSocketConnection) -> None:
        """Join a room you are a member of."""
        if connection.user_key not in rooms.get(message.room, set()):
            raise WebSocketError("not_member", "you are not a member of this room")

    @router.on("room.leave")
    async def room_leave(message: RoomJoin) -> None:
        """Leave a room: an ack when the request has a request_id, else nothing."""

    @router.on("room.crash")
    async def room_crash() -> None:
        raise RuntimeError("a bug")  # logged, answered internal_error; the socket stays open

    # --8<-- [end:handlers]
    app = FastAPI()
    app.include_router(router)
    return app
