"""docs/migrate-from-fastapi.md: the bare FastAPI route this page starts from.

This is the pattern of FastAPI's own WebSocket docs, written as the page shows it
(compressed, without types), with ``verify`` standing for your token check. It works,
which is the point of the page: everything tempest_ws adds is missing from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, Query, WebSocket, WebSocketDisconnect

app = FastAPI()


@dataclass
class User:
    name: str


async def verify(token: str) -> User:
    """Stands for a real token check: the token is the user's name here."""
    return User(name=token)


# --8<-- [start:before]
class ConnectionManager:                      # the FastAPI docs' pattern
    def __init__(self): self.active: list[WebSocket] = []
    async def connect(self, ws): await ws.accept(); self.active.append(ws)
    def disconnect(self, ws): self.active.remove(ws)
    async def broadcast(self, text):
        for ws in self.active: await ws.send_text(text)

manager = ConnectionManager()

@app.websocket("/ws")
async def websocket_endpoint(websocket: WebSocket, token: str = Query()):
    user = await verify(token)                # and if it fails?
    await manager.connect(websocket)
    try:
        while True:
            data = await websocket.receive_text()
            await manager.broadcast(f"{user.name}: {data}")
    except WebSocketDisconnect:
        manager.disconnect(websocket)
# --8<-- [end:before]
