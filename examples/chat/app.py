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

Each client envelope has its own event handler (``@router.on``): the router validates
its ``data`` and answers with what the handler returns or raises.
"""

from __future__ import annotations

import logging
import re
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import FileResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field, SecretStr

from tempest_ws import (
    ConfigurationError,
    WebSocketConnection,
    WebSocketError,
    WebSocketHub,
    WebSocketRouter,
    WebSocketSettings,
    WSEnvelope,
    jwt_bearer_resolver,
    make_websocket_router,
    reply_envelope,
)
from tempest_ws.testing import make_token

__all__ = [
    "ROOM_PREFIX",
    "TOKEN_LIFETIME_SECONDS",
    "add_handlers",
    "app",
    "create_app",
    "may_join",
]

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


class RoomRequest(BaseModel):
    """``data`` of ``subscribe`` and ``unsubscribe``: ``{"topic": "room:<name>"}``."""

    topic: str


class ChatSend(BaseModel):
    """``data`` of ``chat.send``: the room (joined first) and the text."""

    room: str
    text: str  # 1-1000 characters, checked by the handler to answer bad_text


def add_handlers(router: WebSocketRouter, hub: WebSocketHub) -> None:
    """The socket protocol: one event handler per envelope type the page sends."""

    @router.on_connect
    async def connected(connection: WebSocketConnection, ws: WebSocket) -> None:
        logger.info("connection %s: %s connected", connection.connection_id, connection.user_key)

    @router.on_disconnect
    async def left(connection: WebSocketConnection) -> None:
        # The hub sends presence.leave to the rooms this user's last tab was in.
        logger.info("connection %s: %s left", connection.connection_id, connection.user_key)

    # --8<-- [start:subscribe]
    @router.on("subscribe", errors=["bad_room"])
    async def join(message: RoomRequest, connection: WebSocketConnection) -> WSEnvelope:
        """``subscribe {"topic": "room:<name>"}``, as tempest-ws.js sends it.

        The hub tells the room's other members with ``presence.join`` (only them: nobody
        else learns who is where); the page then asks ``presence.get``.
        """
        if not may_join(connection, message.topic) or not await hub.subscribe(
            connection.connection_id,
            message.topic,  # the hub asks the authorizer again
        ):
            raise WebSocketError("bad_room", "topic must be room:<name>")
        room = message.topic.removeprefix(ROOM_PREFIX)
        return WSEnvelope(type="room.joined", data={"room": room})  # with the request_id

    @router.on("unsubscribe", errors=["bad_room"])
    async def leave(message: RoomRequest, connection: WebSocketConnection) -> WSEnvelope:
        """``unsubscribe {"topic": "room:<name>"}``: the room hears ``presence.leave``."""
        if not may_join(connection, message.topic):
            raise WebSocketError("bad_room", "topic must be room:<name>")
        await hub.unsubscribe(connection.connection_id, message.topic)
        room = message.topic.removeprefix(ROOM_PREFIX)
        return WSEnvelope(type="room.left", data={"room": room})

    # --8<-- [end:subscribe]
    # --8<-- [start:send]
    @router.on("chat.send", errors=["not_in_room", "bad_text"])
    async def send(
        message: ChatSend, envelope: WSEnvelope, connection: WebSocketConnection
    ) -> WSEnvelope:
        """``chat.send {"room", "text"}``: broadcast to the room, ack with the request_id."""
        topic = _room_topic(message.room)
        if topic is None or topic not in connection.topics:
            raise WebSocketError("not_in_room", "join the room first")
        if not message.text.strip() or len(message.text) > MAX_TEXT_LENGTH:
            raise WebSocketError("bad_text", f"text must be 1-{MAX_TEXT_LENGTH} characters")
        chat = {
            "room": message.room,
            "from": connection.user_key,
            "text": message.text,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        delivered = await hub.broadcast({"type": "chat.message", "data": chat}, topic=topic)
        return reply_envelope(envelope, {"delivered": delivered})  # ack {"delivered": n}

    # --8<-- [end:send]


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
    router = make_websocket_router(
        hub=hub,
        bearer_resolver=resolve,
        settings=settings,
        path="/ws",
        builtins={"presence.get"},  # the event handlers keep subscribe/unsubscribe
        topic_authorizer=may_join,
    )
    add_handlers(router, hub)
    app.include_router(router)
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
"""The app with settings from the environment, for ``tempest-ws run examples.chat.app:app``."""
