"""HTTP handlers pushing to WebSocket clients through the hub.

Clients connect to ``/ws`` and subscribe to their own inbox (``inbox:<user id>``) and
to the rooms they are a member of (``room:<name>``); ordinary HTTP endpoints deliver to
them: ``POST /users/{user_id}/notify`` reaches every tab of one user,
``POST /topics/{topic}/publish`` every subscriber of a topic and ``POST /announce``
everyone (optionally minus one user). Each endpoint answers with how many connections
the frame was queued for. The hub is reachable from any ``async def`` endpoint of the
same process: it never waits for a socket, so a slow client cannot slow the endpoint.

Every HTTP endpoint takes the same bearer JWT as the socket, checked by the same
resolver: no token or a bad one is 401. Publishing to a topic, announcing and listing
who is online need the ``publisher`` role (a ``roles`` claim in the token), else 403; a
user without it may notify only themselves.

Run it, then sign a token with the ``publisher`` role::

    WS_JWT_SECRET=change-me-to-32-bytes-or-more-please python -m examples.http_push
    python -c "import os; from tempest_ws.testing import make_token; print(make_token(\\
        'backend', secret=os.environ['WS_JWT_SECRET'], claims={'roles': ['publisher']}))"
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Body, Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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
    cid = connection.connection_id
    while True:
        envelope = WSEnvelope.model_validate(await ws.receive_json())
        topic = envelope.data.get("topic") if isinstance(envelope.data, dict) else None
        if envelope.type not in ("subscribe", "unsubscribe"):
            await hub.reply_error(cid, envelope, "unknown_type", f"cannot handle {envelope.type!r}")
            continue
        if not isinstance(topic, str):
            await hub.reply_error(cid, envelope, "invalid_data", "data.topic: a topic name")
            continue
        if envelope.type == "subscribe":
            try:
                allowed = await hub.subscribe(cid, topic)  # asks the topic authorizer
            except ValueError:  # empty, or longer than the hub allows
                allowed = False
            if not allowed:
                await hub.reply_error(cid, envelope, "forbidden", "not your topic")
                continue
        else:
            await hub.unsubscribe(cid, topic)
        # connection.send queues the reply behind earlier pushes: order is kept.
        await connection.send(
            WSEnvelope(
                type=f"{envelope.type}d",  # "subscribed" / "unsubscribed"
                data={"topic": topic},
                request_id=envelope.request_id,
            )
        )


# --8<-- [end:handler]


# --8<-- [start:auth]
PUBLISHER = "publisher"
"""The role (in the token's ``roles`` claim) that may publish to any topic or user."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called an HTTP endpoint: the token's subject and roles."""

    user_id: str
    roles: frozenset[str]


async def caller(
    request: Request,
    credentials: Annotated[
        HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))
    ],
) -> Caller:
    """The caller, from the same bearer token and resolver as the socket's; else 401."""
    token = credentials.credentials if credentials is not None else None
    user = await request.app.state.resolve(token) if token else None
    if token is None or user is None:
        raise HTTPException(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
    # The resolver has just verified this very token (pinned algorithm, signature, exp,
    # aud, iss), so its other claims are read without verifying it a second time.
    roles = jwt.decode(token, options={"verify_signature": False}).get("roles")
    names = [r for r in roles if isinstance(r, str)] if isinstance(roles, list) else []
    return Caller(str(user), frozenset(names))


async def publisher(who: Annotated[Caller, Depends(caller)]) -> Caller:
    """A caller with the ``publisher`` role; else 403."""
    if PUBLISHER not in who.roles:
        raise HTTPException(403, f"needs the {PUBLISHER!r} role")
    return who


Authenticated = Annotated[Caller, Depends(caller)]
Publisher = Annotated[Caller, Depends(publisher)]
# --8<-- [end:auth]


# --8<-- [start:routes]
def get_hub(request: Request) -> WebSocketHub:
    """The hub this app was built with (a FastAPI dependency)."""
    hub: WebSocketHub = request.app.state.hub
    return hub


Hub = Annotated[WebSocketHub, Depends(get_hub)]
Payload = Annotated[dict[str, Any], Body()]


def create_app(
    settings: WebSocketSettings, *, rooms: Mapping[str, Collection[str]] | None = None
) -> FastAPI:
    """The app: the WebSocket endpoint at ``/ws`` and the push endpoints.

    ``rooms`` maps a room name to the user ids of its members (your database, in a
    real app): a user may subscribe to ``room:<name>`` only as a member.
    """
    members = rooms if rooms is not None else {}

    def may_subscribe(connection: WebSocketConnection, topic: str) -> bool:
        """Your own ``inbox:<user id>`` and the rooms you are a member of."""
        kind, _, name = topic.partition(":")
        if kind == "inbox":
            return name == connection.user_key
        return kind == "room" and connection.user_key in members.get(name, ())

    hub = WebSocketHub.from_settings(settings)
    resolve = jwt_bearer_resolver(settings)
    app = FastAPI()
    app.state.hub = hub
    app.state.resolve = resolve  # the HTTP endpoints check tokens with it, too
    app.include_router(
        make_websocket_router(
            handler,
            hub=hub,
            bearer_resolver=resolve,
            settings=settings,
            topic_authorizer=may_subscribe,
        )
    )

    @app.post("/users/{user_id}/notify")
    async def notify(
        user_id: str, payload: Payload, hub: Hub, who: Authenticated
    ) -> dict[str, int]:
        """Every open tab of ``user_id`` gets a ``notification``: yourself, or anyone
        with the ``publisher`` role."""
        if user_id != who.user_id and PUBLISHER not in who.roles:
            raise HTTPException(403, "you may notify only yourself")
        local = await hub.send_to(user_id, WSEnvelope(type="notification", data=payload))
        # The hub counts this process's sockets only: other nodes deliver too, uncounted.
        return {"local_recipients": local}

    @app.post("/topics/{topic}/publish")
    async def publish(topic: str, payload: Payload, hub: Hub, who: Publisher) -> dict[str, int]:
        """Every subscriber of ``topic`` gets an ``event``; nobody else does."""
        local = await hub.broadcast(
            WSEnvelope(type="event", data={"topic": topic, "payload": payload}), topic=topic
        )
        return {"local_recipients": local}

    @app.post("/announce")
    async def announce(
        payload: Payload, hub: Hub, who: Publisher, exclude_user: str | None = None
    ) -> dict[str, int]:
        """Everyone connected gets an ``announcement``, except ``exclude_user``'s tabs."""
        local = await hub.broadcast(
            {"type": "announcement", "data": payload},  # a plain dict works too
            exclude_users=exclude_user,
        )
        return {"local_recipients": local}

    @app.get("/online")
    async def online(hub: Hub, who: Publisher) -> dict[str, Any]:
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
