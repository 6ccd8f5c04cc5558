"""One node of the scale-out example: the same app runs in every worker.

Nothing here knows about Redis or the other workers: ``WebSocketHub.from_settings``
builds a Redis backplane because ``WS_REDIS_URL`` is set, and every hub call below
reaches the connections of every worker. Endpoints:

- ``GET /``: a page that logs in, connects, and shows which worker it talks to;
- ``POST /api/login`` ``{"name"}``: **development only**, signs a token for any name;
- ``POST /api/announce`` ``{"text"}``: an HTTP handler broadcasting to every worker;
- ``GET /api/online``: users online on any worker (these two need a bearer token with
  the ``publisher`` role, a ``roles`` claim the dev login never grants: 401 without a
  valid token, 403 without the role);
- ``WS /ws``: ``say {"text"}`` broadcasts ``said {"from", "text", "node"}`` to the
  ``lobby`` topic on every worker, the sender's other tabs included, not the sender.
"""

from __future__ import annotations

from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request, WebSocket
from fastapi.responses import HTMLResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.testing import make_token

LOBBY = "lobby"
PUBLISHER = "publisher"  # the role (``roles`` claim) that may announce and list users
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(HTTPBearer(auto_error=False))]


async def publisher(request: Request, credentials: Credentials) -> str:
    """The caller of an ops endpoint: the socket's resolver accepts the token (else
    401) and its ``roles`` claim has ``publisher`` (else 403)."""
    token = credentials.credentials if credentials is not None else None
    user = await request.app.state.resolve(token) if token else None
    if token is None or user is None:
        raise HTTPException(401, "a valid bearer token is required", {"WWW-Authenticate": "Bearer"})
    # The resolver has just verified this very token, so its claims are read as is.
    roles = jwt.decode(token, options={"verify_signature": False}).get("roles")
    if not isinstance(roles, list) or PUBLISHER not in roles:
        raise HTTPException(403, f"needs the {PUBLISHER!r} role")
    return str(user)


Publisher = Annotated[str, Depends(publisher)]


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")


class Announcement(BaseModel):
    text: str = Field(min_length=1, max_length=500)


def create_app(settings: WebSocketSettings | None = None) -> FastAPI:
    """The app of one worker; settings from the environment by default."""
    settings = settings or WebSocketSettings()
    if settings.WS_JWT_SECRET is None:
        raise RuntimeError("set WS_JWT_SECRET (the same in every worker)")
    secret = settings.WS_JWT_SECRET.get_secret_value()
    # --8<-- [start:hub]
    hub = WebSocketHub.from_settings(settings)  # Redis backplane when WS_REDIS_URL is set
    node = hub.node_id

    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        await hub.subscribe(connection.connection_id, LOBBY)
        await ws.send_json({"type": "welcome", "data": {"node": node}})
        while True:
            message = await ws.receive_json()
            if message.get("type") == "say":
                text = str((message.get("data") or {}).get("text", ""))[:500]
                said = {"from": connection.user_key, "text": text, "node": node}
                await hub.broadcast(
                    {"type": "said", "data": said},
                    topic=LOBBY,
                    exclude=connection.connection_id,  # on every worker
                )

    # --8<-- [end:hub]
    app = FastAPI(title=f"tempest_ws scale-out node {node}")
    app.state.resolve = jwt_bearer_resolver(settings)  # the socket's and the HTTP side's
    app.include_router(
        make_websocket_router(
            handler, hub=hub, bearer_resolver=app.state.resolve, settings=settings
        )
    )

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE

    @app.post("/api/login")
    async def login(body: Login) -> dict[str, str]:
        return {"token": make_token(body.name, secret=secret, expires_in=3600)}

    @app.post("/api/announce")
    async def announce(body: Announcement, caller: Publisher) -> dict[str, Any]:
        delivered_here = await hub.broadcast(
            {"type": "announcement", "data": {"text": body.text, "node": node}}
        )
        return {"node": node, "delivered_here": delivered_here}

    @app.get("/api/online")
    async def online(caller: Publisher) -> dict[str, Any]:
        return {"node": node, "users": sorted(await hub.online_users())}

    app.state.hub = hub
    return app


PAGE = """<!doctype html>
<meta charset="utf-8">
<title>tempest_ws scale-out</title>
<style>body{font:15px system-ui;margin:2em;max-width:40em}#log{white-space:pre-wrap}</style>
<h1>tempest_ws: two workers, one Redis</h1>
<p>Open this page on both workers (ports in the terminal) and say something.</p>
<form id="f"><input id="name" placeholder="your name" value="ann">
<input id="text" placeholder="message"><button>say</button></form>
<div id="log"></div>
<script>
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
let ws = null;
async function connect(name) {
  const reply = await fetch("/api/login", {method: "POST",
    headers: {"content-type": "application/json"}, body: JSON.stringify({name})});
  const {token} = await reply.json();
  ws = new WebSocket(`ws://${location.host}/ws`, ["bearer", token]);
  ws.onmessage = (event) => {
    const {type, data} = JSON.parse(event.data);
    if (type === "ping") ws.send(JSON.stringify({type: "pong", data: {}}));
    else if (type === "welcome") log(`connected to worker ${data.node}`);
    else if (type === "said") log(`${data.from} (via worker ${data.node}): ${data.text}`);
    else if (type === "announcement") log(`announcement from worker ${data.node}: ${data.text}`);
    else if (type === "resync") log(`resync (epoch ${data.epoch}): messages may be missing`);
  };
  ws.onclose = (event) => log(`closed ${event.code}`);
}
document.getElementById("f").onsubmit = async (event) => {
  event.preventDefault();
  if (!ws) await connect(document.getElementById("name").value);
  const text = document.getElementById("text").value;
  const send = () => ws.send(JSON.stringify({type: "say", data: {text}}));
  if (ws.readyState === WebSocket.OPEN) send(); else ws.addEventListener("open", send);
  log(`me: ${text}`);
};
</script>
"""
