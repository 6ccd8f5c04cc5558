"""Realtime features: authorized rooms, presence, typing, read receipts, request/reply.

The router answers the built-in operations itself (``subscribe``, ``unsubscribe``,
``presence.get``, ``typing``, ``receipt``); the handler only sees ``chat.send``, already
validated against its model. Who may join what is one function (``may_join``); the hub
keeps presence for rooms and sends ``presence.join`` / ``presence.leave`` to a room's
members only. Endpoints:

- ``GET /``: a page using every feature (the browser client from ``/ws/client.js``);
- ``POST /api/login`` ``{"name"}``: **development only**, signs a token for any name;
- ``WS /ws``: the tempest_ws endpoint, ``?topics=room:lobby`` to join at connect time.

Run it (one process; set ``WS_REDIS_URL`` in several processes to scale out)::

    WS_JWT_SECRET=change-me-to-32-bytes-or-more-please python -m examples.realtime
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated

from fastapi import FastAPI, HTTPException, WebSocket
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from tempest_ws import (
    CloseCode,
    MessageRegistry,
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.realtime import receive_envelope
from tempest_ws.testing import make_token

__all__ = ["PAGE", "create_app", "may_join", "messages", "room_presence"]

logger = logging.getLogger("examples.realtime")

# --8<-- [start:messages]
messages = MessageRegistry()
RoomName = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[a-z0-9-]+$")]


@messages.inbound("chat.send")
class ChatSend(BaseModel):
    """Post a line to a room you joined; the reply carries the line's id."""

    room: RoomName
    text: str = Field(min_length=1, max_length=500)


@messages.outbound("chat.message")
class ChatMessage(BaseModel):
    """A line posted to a room you joined."""

    id: str
    room: str
    sender: str
    text: str


# --8<-- [end:messages]


# --8<-- [start:policy]
def may_join(connection: WebSocketConnection, topic: str) -> bool:
    """Rooms are open to everyone; ``inbox:<user>`` only to that user."""
    kind, _, name = topic.partition(":")
    if kind == "room":
        return bool(name)
    if kind == "inbox":
        return name == connection.user_key
    return False


def room_presence(topic: str) -> bool:
    """Presence (join/leave events, ``presence.get``) for rooms, not for inboxes."""
    return topic.startswith("room:")


async def on_connect(connection: WebSocketConnection, ws: WebSocket) -> int | None:
    """Refuse banned users with 4403; remember when and from where the others came."""
    if connection.user_key.startswith("banned-"):
        return CloseCode.FORBIDDEN
    connection.metadata["since"] = datetime.now(UTC).isoformat()
    connection.metadata["agent"] = ws.headers.get("user-agent", "")[:200]
    return None


async def on_disconnect(connection: WebSocketConnection) -> None:
    """Log the session (ids and codes only, never message bodies)."""
    logger.info(
        "%s left (close %s), connected since %s",
        connection.connection_id,
        connection.close_code,
        connection.metadata.get("since"),
    )


# --8<-- [end:policy]


# --8<-- [start:handler]
async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """``chat.send`` only: the router answered the built-ins and validated the data."""
    while True:
        incoming = await receive_envelope(ws)
        if not isinstance(incoming.message, ChatSend):
            continue
        room, request = incoming.message.room, incoming.envelope
        if f"room:{room}" not in connection.topics:
            await hub.reply_error(connection.connection_id, request, "not_subscribed", "join first")
            continue
        text = incoming.message.text
        line = ChatMessage(id=uuid.uuid4().hex, room=room, sender=connection.user_key, text=text)
        await hub.broadcast(messages.envelope(line), topic=f"room:{room}")
        await hub.reply(connection.connection_id, request, {"id": line.id})


# --8<-- [end:handler]


class Login(BaseModel):
    """The dev login form: any name is accepted."""

    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")


def create_app(settings: WebSocketSettings | None = None) -> FastAPI:
    """The app; settings from the environment by default (``uvicorn --factory``)."""
    settings = settings or WebSocketSettings()
    if settings.WS_JWT_SECRET is None:
        raise RuntimeError("set WS_JWT_SECRET (the same in every process)")
    secret = settings.WS_JWT_SECRET.get_secret_value()
    # --8<-- [start:app]
    hub = WebSocketHub.from_settings(
        settings,  # a Redis backplane when WS_REDIS_URL is set
        presence=room_presence,
        require_topic=True,  # a broadcast without topic= is an error, not a leak
    )
    router = make_websocket_router(
        handler,
        hub=hub,
        bearer_resolver=jwt_bearer_resolver(settings),
        settings=settings,
        builtins=True,  # subscribe, unsubscribe, presence.get, typing, receipt
        messages=messages,  # anything else must be a registered, valid message
        topic_authorizer=may_join,
        on_connect=on_connect,
        on_disconnect=[on_disconnect],
    )
    # --8<-- [end:app]
    app = FastAPI(title="tempest_ws realtime example")
    app.state.hub = hub
    app.include_router(router)

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.post("/api/login")
    async def login(body: Login) -> dict[str, str]:
        """**Development only**: a token for any name."""
        if body.name.startswith("banned-"):
            raise HTTPException(403, "banned")  # the socket would refuse it anyway
        return {"token": make_token(body.name, secret=secret), "user": body.name}

    @app.get("/healthz")
    async def healthz() -> dict[str, str | bool]:
        cluster = hub.cluster_stats()
        return {"node": cluster.node_id, "connected": cluster.connected}

    return app


PAGE = """<!doctype html>
<meta charset="utf-8">
<title>tempest_ws realtime</title>
<input id="name" value="ann"> <button id="go">Log in</button>
<p>In the lobby: <span id="members"></span> <em id="typing"></em></p>
<ul id="lines"></ul>
<input id="text" placeholder="say something" disabled>
<!-- --8<-- [start:page] -->
<script type="module">
import { TempestWS } from "/ws/client.js";

const $ = (id) => document.getElementById(id);
const members = new Set();
const show = () => ($("members").textContent = [...members].sort().join(", "));

$("go").onclick = async () => {
  const reply = await fetch("/api/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: $("name").value }),
  });
  const { token, user } = await reply.json();
  const client = new TempestWS("/ws", { token });
  // subscribe: sent now and after every reconnect; the router answers it with
  // {"type":"ack","data":{"type":"subscribe","topic":"room:lobby"},"request_id":"…"},
  // which settles the Promise it returns (a refusal also fires "subscribeerror")
  client.subscribe("room:lobby");

  client.on("open", async () => {
    // presence.get: the members of a room you are in (frames are handled in order,
    // so the subscribe sent on open is done by now)
    const users = await client.presence("room:lobby");  // presence.get's ack: its users
    members.clear();
    users.forEach((u) => members.add(u));
    members.add(user);
    show();
    $("text").disabled = false;
  });

  client.on("message", ({ detail: envelope }) => {
    const data = envelope.data;
    switch (envelope.type) {
      case "presence.join": members.add(data.user_id); show(); break;
      case "presence.leave": members.delete(data.user_id); show(); break;
      case "typing":
        $("typing").textContent = data.typing ? `${data.user_id} is typing...` : "";
        break;
      case "chat.message": {
        const item = document.createElement("li");
        item.textContent = `${data.sender}: ${data.text}`;
        item.id = `line-${data.id}`;
        $("lines").append(item);
        // receipt: tell the room this line was read (relayed, never stored)
        if (data.sender !== user) {
          client.send("receipt", { topic: "room:lobby", message_id: data.id, status: "read" });
        }
        break;
      }
      case "receipt": {
        const item = document.getElementById(`line-${data.message_id}`);
        if (item) item.title = `${data.status} by ${data.user_id}`;
        break;
      }
    }
  });

  let typingSent = 0;
  $("text").oninput = () => {
    if (Date.now() - typingSent > 3000) {  // at most one typing event every 3 s
      typingSent = Date.now();
      client.send("typing", { topic: "room:lobby", typing: true });
    }
  };
  $("text").onkeydown = async (event) => {
    if (event.key !== "Enter" || !$("text").value) return;
    const text = $("text").value;
    $("text").value = "";
    client.send("typing", { topic: "room:lobby", typing: false });
    try {
      await client.request("chat.send", { room: "lobby", text });  // ack {"id": ...}
    } catch (error) {
      console.warn(error.code, error.message);  // e.g. invalid_data
    }
  };
};
</script>
<!-- --8<-- [end:page] -->
"""


if __name__ == "__main__":
    from tempest_ws.server import run

    logging.basicConfig(level=logging.INFO)
    app_settings = WebSocketSettings()
    run(create_app(app_settings), settings=app_settings)
