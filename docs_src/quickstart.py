"""docs/quickstart.md: an app of your own, with the page that talks to it.

Save it as ``app.py``, run ``tempest-ws run app:app``, and open
``http://127.0.0.1:8000/#token=<token>`` with a token from ``tempest-ws token --sub ann``.
"""

from __future__ import annotations

# --8<-- [start:app]
from fastapi import FastAPI, WebSocket
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, ValidationError

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
    receive_envelope,
)

settings = WebSocketSettings()  # WS_* variables and .env; WS_JWT_SECRET must be set
hub = WebSocketHub.from_settings(settings)

# Who is in which room: your database in a real app. "lobby" is open to everyone.
ROOM_MEMBERS: dict[str, set[str]] = {"lobby": set(), "staff": {"ann"}}


def may_subscribe(connection: WebSocketConnection, topic: str) -> bool:
    """Your own inbox, and the rooms you belong to; every other topic is closed."""
    kind, _, name = topic.partition(":")
    if kind == "inbox":
        return name == connection.user_key
    members = ROOM_MEMBERS.get(name) if kind == "room" else None
    return members is not None and (name == "lobby" or connection.user_key in members)


class ChatSend(BaseModel):
    room: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=2000)


async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """Runs once per authenticated connection; subscribe is answered by the router."""
    while True:
        incoming = await receive_envelope(ws)
        envelope = incoming.envelope
        if envelope.type != "chat.send":
            await hub.reply_error(connection.connection_id, envelope, "unknown_type", "chat.send only")
            continue
        try:
            message = ChatSend.model_validate(envelope.data)
        except ValidationError:
            await hub.reply_error(connection.connection_id, envelope, "invalid_data", "room, text")
            continue
        if f"room:{message.room}" not in connection.topics:
            await hub.reply_error(connection.connection_id, envelope, "not_subscribed", "join first")
            continue
        line = {"room": message.room, "from": connection.user_key, "text": message.text}
        await hub.broadcast({"type": "chat.message", "data": line}, topic=f"room:{message.room}")


app = FastAPI()
app.include_router(
    make_websocket_router(
        handler,
        hub=hub,
        bearer_resolver=jwt_bearer_resolver(settings),
        settings=settings,
        builtins=True,  # subscribe/unsubscribe/presence.get answered before your handler
        topic_authorizer=may_subscribe,
    )
)


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    """The page: it reads its token from the URL's #token=… (never sent to the server)."""
    return PAGE


# --8<-- [end:app]

# --8<-- [start:page]
PAGE = """<!doctype html>
<meta charset="utf-8"><link rel="icon" href="data:,">
<title>tempest_ws quick start</title>
<form id="say"><input id="text" autocomplete="off" required> <button>Send</button></form>
<pre id="log"></pre>
<script type="module">
  import { TempestWS } from "/ws/client.js";
  const log = (line) => (document.getElementById("log").textContent += line + "\\n");
  const token = new URLSearchParams(location.hash.slice(1)).get("token");
  if (!token) log("open this page as /#token=<a token from: tempest-ws token --sub ann>");
  const client = new TempestWS("/ws", { tokenProvider: () => token });
  client.addEventListener("open", () => log("connected"));
  client.addEventListener("error", (e) => log(`problem: ${e.detail.error.message}`));
  client.addEventListener("message", ({ detail: { type, data } }) => {
    if (type === "chat.message") log(`${data.from}: ${data.text}`);
    if (type === "error") log(`error: ${data.message}`);
  });
  await client.subscribe("room:lobby");  // resolves with the router's ack
  log("joined room:lobby");
  document.getElementById("say").addEventListener("submit", (event) => {
    event.preventDefault();
    client.send("chat.send", { room: "lobby", text: document.getElementById("text").value });
    document.getElementById("text").value = "";
  });
</script>
"""
# --8<-- [end:page]
