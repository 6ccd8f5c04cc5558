"""docs/events.md, dependencies: Depends, sub-dependencies, yield, the user."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, WebSocket
from pydantic import BaseModel

from tempest_ws import (
    WebSocketHub,
    WebSocketSettings,
    current_user,
    jwt_bearer_resolver,
    make_websocket_router,
)


class Database:
    """Stands for a real database: counts the sessions opened and closed."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.notes: list[tuple[str, str]] = []


class NoteAdd(BaseModel):
    text: str


class NoteAdded(BaseModel):
    count: int


# --8<-- [start:dependencies]
def get_database(websocket: WebSocket) -> Database:
    """A dependency may ask for the ``WebSocket``: here, to reach the app's state."""
    database: Database = websocket.app.state.database
    return database


async def get_session(
    database: Annotated[Database, Depends(get_database)],
) -> AsyncIterator[Database]:
    """A ``yield`` dependency: opened before the handler, closed after each message."""
    database.opened += 1
    try:
        yield database
    finally:
        database.closed += 1


# --8<-- [end:dependencies]


def create_app(settings: WebSocketSettings) -> FastAPI:
    """``note.add`` stores a note for the user with a per-message session."""
    hub = WebSocketHub.from_settings(settings)
    router = make_websocket_router(
        hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
    )

    # --8<-- [start:handler]
    @router.on("note.add")
    async def note_add(
        message: NoteAdd,
        session: Annotated[Database, Depends(get_session)],
        user: Annotated[str, Depends(current_user)],
    ) -> NoteAdded:
        """Add a note for the current user."""
        session.notes.append((user, message.text))
        return NoteAdded(count=sum(1 for owner, _ in session.notes if owner == user))

    # --8<-- [end:handler]
    app = FastAPI()
    app.state.database = Database()
    app.include_router(router)
    return app
