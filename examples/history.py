"""Resumable rooms: clients that come back get what they missed, and an HTTP endpoint
pages through a room's history.

Topics ``room:*`` keep history (``WS_HISTORY_TOPICS``). Clients use the built-in
``subscribe``; one that stored the position of the last message it got sends it back
(``{"topic": "room:1", "offset": 42, "epoch": "..."}``) and gets the missed messages,
then ``recovery``, then live ones. ``POST /rooms/{room}/messages`` publishes;
``GET /rooms/{room}/history`` pages through what the history still holds, for a client
that loads a room's past on first view. Both need the same bearer token as the socket,
and the history endpoint asks the same authorizer as a subscription. With
``WS_REDIS_URL`` set, every process shares one history (Redis Streams) and a client can
resume on any of them.

``GET /`` serves ``history_static/index.html``: a page that shows a room, keeps its
lines and the client's positions in ``localStorage`` and resumes from them on the next
visit (or reloads the room from ``/rooms/{room}/history`` when it cannot).

Run it, then open ``http://127.0.0.1:8000/#room=lobby&token=<token>`` with a token
signed by the same secret::

    export WS_JWT_SECRET=change-me-to-32-bytes-or-more-please WS_HISTORY_TOPICS='room:*'
    uvicorn examples.history:create_app --factory \\
        --ws-max-size 65536 --ws-per-message-deflate false --ws-ping-interval 0
    python -c "import os; from tempest_ws.testing import make_token; \\
        print(make_token('ann', secret=os.environ['WS_JWT_SECRET'], expires_in=3600))"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tempest_ws import (
    BackplaneError,
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)

STATIC_DIR = Path(__file__).with_name("history_static")


async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """Nothing but the built-ins here: the router answers ``subscribe`` (with replay)."""
    while True:
        await ws.receive_json()


def may_read(user: str, topic: str) -> bool:
    """Who may read a room. Here any signed-in user may read any room; a real app
    checks membership. Used for subscriptions *and* for the history endpoint."""
    return bool(user) and topic.startswith("room:")


async def may_subscribe(connection: WebSocketConnection, topic: str) -> bool:
    """The topic authorizer: the same rule as the HTTP endpoint."""
    return may_read(connection.user_key, topic)


async def reader(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials, Depends(HTTPBearer())],
) -> str:
    """The caller of an HTTP endpoint, from the same bearer token as the socket's."""
    user = await request.app.state.resolve(credentials.credentials)
    if user is None:
        raise HTTPException(401, "invalid token")
    return str(user)


User = Annotated[str, Depends(reader)]


# --8<-- [start:app]
def create_app(settings: WebSocketSettings | None = None) -> FastAPI:
    """The app; settings from the environment by default (``uvicorn --factory``)."""
    settings = settings or WebSocketSettings()
    hub = WebSocketHub.from_settings(settings)  # history for WS_HISTORY_TOPICS
    resolve = jwt_bearer_resolver(settings)
    app = FastAPI(title="tempest_ws history example")
    app.state.resolve = resolve
    app.include_router(
        make_websocket_router(
            handler,
            hub=hub,
            bearer_resolver=resolve,
            settings=settings,
            builtins=True,  # subscribe with a position is answered with the replay
            topic_authorizer=may_subscribe,
        )
    )

    @app.post("/rooms/{room}/messages")
    async def post(room: str, user: User, text: Annotated[str, Body(embed=True)]) -> Any:
        """Publish ``chat.message`` to ``room:<room>``; each gets the room's next offset."""
        envelope = {"type": "chat.message", "data": {"from": user, "text": text}}
        try:
            local = await hub.broadcast(envelope, topic=f"room:{room}")
        except BackplaneError as exc:  # delivered here, maybe not elsewhere or not stored
            raise HTTPException(503, str(exc)) from None
        # This process's sockets only: the other nodes deliver to theirs, uncounted.
        return {"local_recipients": local}

    @app.get("/rooms/{room}/history")
    async def history(
        room: str,
        user: User,
        since: Annotated[int | None, Query(ge=0)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        """Up to ``limit`` messages of the room, oldest first: the newest ones, or those
        after offset ``since`` (page forward with the last offset of a page)."""
        topic = f"room:{room}"
        if not may_read(user, topic):
            raise HTTPException(403, "not allowed")
        try:
            page = await hub.history(topic, since=since, limit=limit)
        except BackplaneError as exc:
            raise HTTPException(503, str(exc)) from None
        return {
            "epoch": page.position.epoch,  # offsets mean something only within it
            "latest": page.position.offset,
            "messages": [
                {"offset": entry.offset, **json.loads(entry.frame)} for entry in page.entries
            ],
        }

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        """The resuming page (``history_static/index.html``)."""
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"node": hub.cluster_stats().node_id}

    return app


# --8<-- [end:app]
