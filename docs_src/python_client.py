"""docs/python-client.md: sessions, the close-code policy, tokens, nodes, raw streams.

Each function holds one snippet of the page; ``tests/docs/test_docs_src.py`` runs them
against :func:`create_app` (or a plain ``websockets`` server, for the raw client) under
a real uvicorn server.
"""

import itertools
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, Field, ValidationError

from examples.python_client import RefreshingToken
from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    WSEnvelope,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.client import Disconnect, RequestError, StampedEnvelope, WebSocketClient
from tempest_ws.realtime import OnConnect, receive_envelope

GetToken = Callable[[], Awaitable[str]]


class ChatSend(BaseModel):
    """What ``chat.send`` carries."""

    room: str
    text: str = Field(max_length=2000)


class ChatSent(BaseModel):
    """The answer to a ``chat.send`` request: the message's id."""

    id: int


async def chat_handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """``chat.send`` goes to ``room:<room>`` as ``chat.message`` (a request of it is
    answered ``chat.send.reply`` with the message id, or ``error`` ``invalid_data``);
    ``users`` lists who is online."""
    ids = itertools.count(1)
    while True:
        incoming = await receive_envelope(ws)
        envelope = incoming.envelope
        if envelope.type == "chat.send":
            try:
                post = ChatSend.model_validate(envelope.data)
            except ValidationError as exc:
                errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
                problem = {"code": "invalid_data", "message": "invalid chat.send", "errors": errors}
                await hub.reply(connection.connection_id, envelope, problem, message_type="error")
                continue
            line = {"room": post.room, "text": post.text, "from": connection.user_key}
            await hub.broadcast({"type": "chat.message", "data": line}, topic=f"room:{post.room}")
            if envelope.request_id is not None:
                sent = ChatSent(id=next(ids))
                await hub.reply(connection.connection_id, envelope, sent, message_type="chat.send.reply")
        elif envelope.type == "users":
            await hub.reply(connection.connection_id, envelope, sorted(await hub.online_users()))


def create_app(
    settings: WebSocketSettings, hub: WebSocketHub, *, on_connect: OnConnect | None = None
) -> FastAPI:
    """The server side: built-in operations on, any ``room:*`` topic open to everyone."""
    app = FastAPI()
    app.include_router(
        make_websocket_router(
            chat_handler,
            hub=hub,
            bearer_resolver=jwt_bearer_resolver(settings),
            settings=settings,
            builtins=True,
            topic_authorizer=lambda connection, topic: topic.startswith(("room:", "chat:")),
            on_connect=on_connect,
        )
    )
    return app


async def session(url: str, get_token: GetToken) -> tuple[WSEnvelope, WSEnvelope]:
    """Join the lobby, say hi, ask who is online, then read until our line comes back."""
    # --8<-- [start:session]
    async with WebSocketClient(url, token_provider=get_token) as client:
        await client.subscribe("room:lobby")            # remembered; sent again on reconnect
        await client.send("chat.send", {"room": "lobby", "text": "hi"})
        reply = await client.request("users", timeout=5)  # the envelope with the same request_id
        async for envelope in client:                     # WSEnvelope, never hello/ping/pong
            if envelope.type == "chat.message":
                break
    # --8<-- [end:session]
    return reply, envelope


async def post(client: WebSocketClient, text: str) -> ChatSent | RequestError:
    """Post ``text`` to the lobby: the server's ``ChatSent``, or why it refused."""
    # --8<-- [start:typed]
    try:
        sent = await client.request(
            "chat.send", ChatSend(room="lobby", text=text), response_model=ChatSent
        )
    except RequestError as error:  # an "error" reply, or a reply that is not a ChatSent
        return error  # .code, .reason, .data (the error's details), .request_id
    return sent  # a ChatSent: validated, typed
    # --8<-- [end:typed]


def forgiving_client(url: str, get_token: GetToken) -> WebSocketClient:
    """A client that keeps trying after a 4403 (``FORBIDDEN``)."""
    # --8<-- [start:is_fatal]
    from tempest_ws import CloseCode
    from tempest_ws.client import Disconnect, WebSocketClient, default_is_fatal

    def is_fatal(disconnect: Disconnect) -> bool:
        if disconnect.code == CloseCode.FORBIDDEN:
            return False  # our on-connect policy is temporary: keep trying
        return default_is_fatal(disconnect)

    client = WebSocketClient(url, token_provider=get_token, is_fatal=is_fatal)
    # --8<-- [end:is_fatal]
    return client


def refreshing_client(
    url: str, fetch_from_your_identity_provider: Callable[[], Awaitable[tuple[str, float]]]
) -> WebSocketClient:
    """A client that fetches a new token after the server refused one (4401)."""
    # --8<-- [start:forget]
    token = RefreshingToken(fetch_from_your_identity_provider)

    def on_disconnect(disconnect: Disconnect) -> None:
        token.forget(disconnect)  # a 4401: log in again on the next attempt

    client = WebSocketClient(url, token_provider=token, on_disconnect=on_disconnect)
    # --8<-- [end:forget]
    return client


def round_robin_client(
    get_token: GetToken,
    urls: Iterable[str] = ("wss://ws-a.example.com/ws", "wss://ws-b.example.com/ws"),
) -> WebSocketClient:
    """A client that tries the nodes in turn, one per connection attempt."""
    # --8<-- [start:nodes]
    import itertools

    nodes = itertools.cycle(urls)
    # round robin: a dead node costs one failed attempt, then the next one is tried
    client = WebSocketClient(lambda: next(nodes), token_provider=get_token)
    # --8<-- [end:nodes]
    return client


async def room_tools(client: WebSocketClient, message_id: str) -> set[str]:
    """Presence, a typing indicator and a receipt on ``room:lobby``; returns the users."""
    # --8<-- [start:builtins]
    users: set[str] = await client.presence("room:lobby")   # presence.get -> user ids
    await client.typing("room:lobby")                        # typing indicator (typing=False: stopped)
    await client.receipt("room:lobby", message_id, "read")   # a receipt for one message
    # --8<-- [end:builtins]
    return users


class Room(Protocol):
    """The application's state of one room, rebuilt from its history."""

    def apply(self, data: Any, *, at: int) -> None: ...


async def follow(client: WebSocketClient, rooms: dict[str, Room]) -> None:
    """Apply every message of a history topic to its room, in order, forever."""
    # --8<-- [start:stamped]
    async for envelope in client:
        if isinstance(envelope, StampedEnvelope):
            rooms[envelope.topic].apply(envelope.data, at=envelope.offset)
    # --8<-- [end:stamped]


async def read_feed(
    api_key: str,
    on_message: Callable[[Any], None],
    feed_url: str = "wss://stream.example.com/v2/feed",
) -> None:
    """Subscribe to the trades of a non-tempest_ws stream and hand each one over."""
    # --8<-- [start:raw]
    from tempest_ws.client import RawWebSocketClient

    async with RawWebSocketClient(
        feed_url,
        headers={"X-Api-Key": api_key},
        subprotocols=["v2.feed"],
        max_size=4 * 1024 * 1024,
        silence_timeout=30,
    ) as feed:
        await feed.send('{"op": "subscribe", "channel": "trades"}')
        async for message in feed:
            on_message(json.loads(message))
    # --8<-- [end:raw]
