"""The chat demo's FastAPI app: rooms as topics, presence, and pushes from HTTP handlers.

Everything runs in one process with the embedded in-memory `WebSocketHub`; no
other server is needed. Endpoints:

- ``GET /``: the chat page (``static/index.html``), which imports the browser client
  from ``/ws/client.js``; ``GET /minimal``: the smallest complete client page
  (``static/minimal.html``).
- ``POST /api/login`` ``{"name": ...}``: **development only**. Signs a JWT for any name
  with ``WS_JWT_SECRET`` (a random secret is generated at startup when none is set, so
  the demo runs with zero configuration and tokens die with the process).
- ``POST /api/announce`` ``{"text": ..., "room": optional}``: an HTTP handler pushing
  through the hub to every socket, or to one room's members. It needs a bearer token
  with the ``publisher`` role (a ``roles`` claim; the dev login never grants it): 401
  without a valid token, 403 without the role.
- ``WS /ws``: the tempest_ws endpoint (bearer subprotocol, heartbeats, close codes).

There is no "who is online" list: a user only learns who is in the rooms they joined.
The hub keeps presence for ``room:*`` topics and sends ``presence.join`` /
``presence.leave`` to that room's members only; the router answers ``presence.get``.

Wire protocol on the socket (every frame is an envelope ``{type, data, request_id}``):

- client ``subscribe {"topic": "room:<name>"}`` joins a room and gets
  ``room.joined {"room"}``; ``unsubscribe`` leaves it (``room.left {"room"}``).
- client ``presence.get {"topic": "room:<name>"}`` (a room it is in) replies
  ``ack {"type": "presence.get", "topic", "users"}``: the room's members.
- the room's other members get ``presence.join`` / ``presence.leave
  {"topic", "user_id"}`` when a user's first tab joins or last tab leaves it.
- client ``chat.send {"room", "text"}`` broadcasts ``chat.message {"room", "from",
  "text", "at"}`` to the room and replies ``ack {"delivered": n}`` with its request_id.
- the server pushes ``announcement {"text", "room"}`` from ``POST /api/announce``.
- a bad request gets ``error {"code", "message"}`` with the request's request_id.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, SecretStr

from tempest_ws import (
    ConfigurationError,
    ConnectionClosedError,
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    WSEnvelope,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.testing import make_token

__all__ = ["ROOM_PREFIX", "TOKEN_LIFETIME_SECONDS", "app", "create_app", "may_join"]

logger = logging.getLogger("examples.chat")

STATIC_DIR = Path(__file__).parent / "static"
ROOM_PREFIX = "room:"
TOKEN_LIFETIME_SECONDS = 3600
MAX_TEXT_LENGTH = 1000
_ROOM_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
_GENERATED_SECRET_BYTES = 64  # enough for HS256, HS384 and HS512
PUBLISHER = "publisher"  # the role (``roles`` claim) that may push from HTTP
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


class LoginRequest(BaseModel):
    """The dev login form: any name is accepted."""

    name: str = Field(min_length=1, max_length=24, pattern=r"^[\w.-]+( [\w.-]+)*$")


class LoginResponse(BaseModel):
    """A token for the ``bearer`` subprotocol, valid ``expires_in`` seconds."""

    token: str
    user: str
    expires_in: int


class AnnounceRequest(BaseModel):
    """A message pushed from HTTP: to everyone, or to one room when ``room`` is set."""

    text: str = Field(min_length=1, max_length=500)
    room: str | None = Field(default=None, pattern=_ROOM_NAME.pattern)


class AnnounceResponse(BaseModel):
    """How many sockets the announcement was queued for (in this process)."""

    delivered: int


async def publisher(request: Request, credentials: Credentials) -> str:
    """The caller of a push endpoint: the socket's resolver accepts the token (else 401) and its
    ``roles`` claim has ``publisher`` (else 403)."""
    token = credentials.credentials if credentials is not None else None
    user = await request.app.state.resolve(token) if token else None
    if token is None or user is None:
        raise HTTPException(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
    # The resolver has just verified this very token, so its claims are read as is.
    roles = jwt.decode(token, options={"verify_signature": False}).get("roles")
    if not isinstance(roles, list) or PUBLISHER not in roles:
        raise HTTPException(403, f"needs the {PUBLISHER!r} role")
    return str(user)


def _with_secret(settings: WebSocketSettings) -> WebSocketSettings:
    """Return settings that carry an HMAC secret, generating one when none is set."""
    algorithm = settings.WS_JWT_ALGORITHMS[0]
    if not algorithm.startswith("HS"):
        raise ConfigurationError(
            f"the chat demo signs its own tokens with an HMAC algorithm, not {algorithm}"
        )
    if settings.WS_JWT_SECRET is not None:
        return settings
    logger.warning(
        "WS_JWT_SECRET is not set: generated a random secret for this process "
        "(tokens stop working when it exits)"
    )
    secret = SecretStr(secrets.token_urlsafe(_GENERATED_SECRET_BYTES))
    return settings.model_copy(update={"WS_JWT_SECRET": secret})


def _room_topic(room: object) -> str | None:
    if isinstance(room, str) and _ROOM_NAME.match(room):
        return ROOM_PREFIX + room
    return None


# --8<-- [start:policy]
def may_join(connection: WebSocketConnection, topic: str) -> bool:
    """The topic authorizer: any user may join a room; no other topic exists."""
    return _room_topic(topic.removeprefix(ROOM_PREFIX)) == topic


def room_presence(topic: str) -> bool:
    """Keep presence (``presence.join``/``presence.leave``, ``presence.get``) for rooms."""
    return topic.startswith(ROOM_PREFIX)


# --8<-- [end:policy]


class ChatHandler:
    """The per-connection loop: one instance serves every connection of the app."""

    async def __call__(
        self, ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub
    ) -> None:
        logger.info("connection %s: %s connected", connection.connection_id, connection.user_key)
        try:
            while True:
                raw = await ws.receive_json()
                try:
                    envelope = WSEnvelope.model_validate(raw)
                except ValueError:
                    continue  # the router already answered malformed frames
                await self._dispatch(envelope, connection, hub)
        except ConnectionClosedError:
            pass
        finally:
            # The hub sends presence.leave to the rooms this user's last tab was in.
            logger.info("connection %s: %s left", connection.connection_id, connection.user_key)

    async def _dispatch(
        self, envelope: WSEnvelope, connection: WebSocketConnection, hub: WebSocketHub
    ) -> None:
        data: dict[str, Any] = envelope.data if isinstance(envelope.data, dict) else {}
        rid = envelope.request_id
        if envelope.type in ("subscribe", "unsubscribe"):
            await self._join_or_leave(envelope.type, data, connection, hub, rid)
        elif envelope.type == "chat.send":
            await self._send(data, connection, hub, rid)
        else:
            await self._error(connection, "unknown_type", f"unknown type {envelope.type!r}", rid)

    # --8<-- [start:subscribe]
    async def _join_or_leave(
        self,
        kind: str,
        data: dict[str, Any],
        connection: WebSocketConnection,
        hub: WebSocketHub,
        rid: str | None,
    ) -> None:
        """``subscribe``/``unsubscribe {"topic": "room:<name>"}``, as tempest-ws.js sends them.

        The hub tells the room's other members with ``presence.join``/``presence.leave``
        (only them: nobody else learns who is where); the page then asks ``presence.get``.
        """
        topic = data.get("topic")
        if not isinstance(topic, str) or not may_join(connection, topic):
            await self._error(connection, "bad_room", "topic must be room:<name>", rid)
            return
        room = topic.removeprefix(ROOM_PREFIX)
        if kind == "subscribe":
            if not await hub.subscribe(connection.connection_id, topic):  # the authorizer
                await self._error(connection, "bad_room", "topic must be room:<name>", rid)
                return
        else:
            await hub.unsubscribe(connection.connection_id, topic)
        reply = "room.joined" if kind == "subscribe" else "room.left"
        await connection.send({"type": reply, "data": {"room": room}, "request_id": rid})

    # --8<-- [end:subscribe]
    # --8<-- [start:send]
    async def _send(
        self,
        data: dict[str, Any],
        connection: WebSocketConnection,
        hub: WebSocketHub,
        rid: str | None,
    ) -> None:
        """``chat.send {"room", "text"}``: broadcast to the room, ack with the request_id."""
        topic = _room_topic(data.get("room"))
        text = data.get("text")
        if topic is None or topic not in connection.topics:
            await self._error(connection, "not_in_room", "join the room first", rid)
            return
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT_LENGTH:
            await self._error(
                connection, "bad_text", f"text must be 1-{MAX_TEXT_LENGTH} characters", rid
            )
            return
        message = {
            "room": data["room"],
            "from": connection.user_key,
            "text": text,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        delivered = await hub.broadcast({"type": "chat.message", "data": message}, topic=topic)
        await connection.send({"type": "ack", "data": {"delivered": delivered}, "request_id": rid})

    # --8<-- [end:send]
    @staticmethod
    async def _error(
        connection: WebSocketConnection, code: str, message: str, rid: str | None
    ) -> None:
        await connection.send(
            {"type": "error", "data": {"code": code, "message": message}, "request_id": rid}
        )


def create_app(settings: WebSocketSettings | None = None) -> FastAPI:
    """Build the chat app with its own in-memory hub.

    ``settings`` default to ``WebSocketSettings()`` (the ``WS_*`` environment and
    ``.env``). Without ``WS_JWT_SECRET`` a random secret is generated, so the app runs
    with zero configuration. The hub and the effective settings are on ``app.state``.

    Raises:
        ConfigurationError: ``WS_JWT_ALGORITHMS`` starts with a non-HMAC algorithm (the
            demo signs its own tokens).
    """
    if settings is None:
        settings = WebSocketSettings()
    settings = _with_secret(settings)
    secret = settings.WS_JWT_SECRET
    if secret is None:  # _with_secret always sets one; this keeps the types honest
        raise ConfigurationError("WS_JWT_SECRET missing")
    algorithm = settings.WS_JWT_ALGORITHMS[0]
    # --8<-- [start:hub]
    hub = WebSocketHub.from_settings(
        settings,
        presence=room_presence,  # presence.join/leave go to a room's members only
        require_topic=True,  # a broadcast to everyone must say so (everyone=True)
    )
    app = FastAPI(title="tempest_ws chat demo")
    app.state.hub = hub
    app.state.settings = settings
    resolve = jwt_bearer_resolver(settings)
    app.state.resolve = resolve  # HTTP endpoints check tokens with it, too
    app.include_router(
        make_websocket_router(
            ChatHandler(),
            hub=hub,
            bearer_resolver=resolve,
            settings=settings,
            path="/ws",
            builtins={"presence.get"},  # the handler keeps subscribe/unsubscribe
            topic_authorizer=may_join,
        )
    )
    # --8<-- [end:hub]

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/minimal", include_in_schema=False)
    async def minimal() -> FileResponse:
        return FileResponse(STATIC_DIR / "minimal.html", headers={"Cache-Control": "no-cache"})

    @app.post("/api/login")
    async def login(body: LoginRequest) -> LoginResponse:
        """Dev-only login: a signed token for any name (never use this in production)."""
        token = make_token(
            body.name,
            secret=secret.get_secret_value(),
            algorithm=algorithm,
            expires_in=TOKEN_LIFETIME_SECONDS,
            claims=_claims(settings),
        )
        return LoginResponse(token=token, user=body.name, expires_in=TOKEN_LIFETIME_SECONDS)

    # --8<-- [start:announce]
    @app.post("/api/announce")
    async def announce(
        body: AnnounceRequest, caller: Annotated[str, Depends(publisher)]
    ) -> AnnounceResponse:
        """Push from an HTTP handler (a ``publisher`` only): to everyone, or to one room."""
        envelope = {"type": "announcement", "data": {"text": body.text, "room": body.room}}
        topic = ROOM_PREFIX + body.room if body.room else None
        delivered = await hub.broadcast(envelope, topic=topic, everyone=topic is None)
        logger.info("announcement queued for %d socket(s)", delivered)
        return AnnounceResponse(delivered=delivered)

    # --8<-- [end:announce]

    return app


def _claims(settings: WebSocketSettings) -> dict[str, str]:
    claims: dict[str, str] = {}
    if settings.WS_JWT_AUDIENCE:
        claims["aud"] = settings.WS_JWT_AUDIENCE
    if settings.WS_JWT_ISSUER:
        claims["iss"] = settings.WS_JWT_ISSUER
    return claims


app = create_app()
"""The app with settings from the environment, for ``uvicorn examples.chat.app:app
--ws-max-size 65536 --ws-per-message-deflate false --ws-ping-interval 0``."""
