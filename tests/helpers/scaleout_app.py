"""The app the scale-out tests run in several uvicorn processes, and how they run it.

``create_app`` (an app factory, so importing this module builds nothing) reads its
``WS_*`` settings from the environment (``WS_REDIS_URL`` among them), as a deployment
would. Clients talk to the hub through the WebSocket (``subscribe``);
the tests drive every hub operation through small HTTP endpoints, the way an
application pushes from its HTTP handlers. A hub operation that raises
``BackplaneError`` answers HTTP 503 with the error's text.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse

from tempest_ws import (
    BackplaneError,
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)


async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """``subscribe`` / ``unsubscribe`` a topic; everything else is ignored."""
    while True:
        message = await ws.receive_json()
        topic = str((message.get("data") or {}).get("topic", ""))
        if message.get("type") == "subscribe":
            await hub.subscribe(connection.connection_id, topic)
            await ws.send_json({"type": "subscribed", "data": {"topic": topic}})
        elif message.get("type") == "unsubscribe":
            await hub.unsubscribe(connection.connection_id, topic)
            await ws.send_json({"type": "unsubscribed", "data": {"topic": topic}})


def _unavailable(exc: BackplaneError) -> JSONResponse:
    return JSONResponse({"error": type(exc).__name__, "reason": str(exc)}, status_code=503)


def create_app() -> FastAPI:
    """The app of one node, its settings read from the environment (``--factory``)."""
    settings = WebSocketSettings()
    hub = WebSocketHub.from_settings(settings)
    app = FastAPI()
    app.include_router(
        make_websocket_router(
            handler, hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
        )
    )

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        cluster = hub.cluster_stats()
        return {"node": cluster.node_id, "connected": cluster.connected, "epoch": cluster.epoch}

    @app.post("/ops/broadcast", response_model=None)
    async def broadcast(body: dict[str, Any]) -> dict[str, Any] | JSONResponse:
        try:
            local = await hub.broadcast(
                body["envelope"],
                topic=body.get("topic"),
                exclude=body.get("exclude"),
                exclude_users=body.get("exclude_users"),
            )
        except BackplaneError as exc:
            return _unavailable(exc)
        return {"local": local}

    @app.post("/ops/send_to", response_model=None)
    async def send_to(body: dict[str, Any]) -> dict[str, Any] | JSONResponse:
        try:
            return {"local": await hub.send_to(body["user"], body["envelope"])}
        except BackplaneError as exc:
            return _unavailable(exc)

    @app.post("/ops/send_to_connection", response_model=None)
    async def send_to_connection(body: dict[str, Any]) -> dict[str, Any] | JSONResponse:
        try:
            return {"sent": await hub.send_to_connection(body["connection_id"], body["envelope"])}
        except BackplaneError as exc:
            return _unavailable(exc)

    @app.post("/ops/disconnect_user", response_model=None)
    async def disconnect_user(body: dict[str, Any]) -> dict[str, Any] | JSONResponse:
        try:
            return {"local": await hub.disconnect_user(body["user"])}
        except BackplaneError as exc:
            return _unavailable(exc)

    @app.get("/ops/online", response_model=None)
    async def online(user: str | None = None) -> dict[str, Any] | JSONResponse:
        try:
            if user is not None:
                return {"online": await hub.is_online(user)}
            return {"users": sorted(await hub.online_users())}
        except BackplaneError as exc:
            return _unavailable(exc)

    @app.get("/ops/stats")
    async def stats() -> dict[str, Any]:
        local, cluster = hub.stats(), hub.cluster_stats()
        return {"connections": local.connections, "users": local.users, **asdict(cluster)}

    return app


# -- running it: one uvicorn process per node, stopped by PID ---------------------------

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.helpers.scaleout_app:create_app"


class AppProcess:
    """``python -m uvicorn tests.helpers.scaleout_app:app`` on a free loopback port.

    ``env`` holds the ``WS_*`` settings. `start()` waits (bounded) until ``/healthz``
    answers; `stop()` sends SIGTERM to the PID (the lifespan stops the hub), then
    SIGKILL if the process lingers. uvicorn's output goes to `logfile`.
    """

    def __init__(self, env: dict[str, str], *, app: str = APP, workdir: Path) -> None:
        self.env = {**os.environ, **env}
        self.app = app
        self.workdir = workdir
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def logfile(self) -> Path:
        return self.workdir / f"uvicorn-{self.port}.log"

    def spawn(self) -> None:
        """Start the process on a fresh free port (does not wait)."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        with self.logfile.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "uvicorn", self.app, "--factory"),
                    *("--host", "127.0.0.1", "--port", str(self.port), "--lifespan", "on"),
                    *("--log-level", "warning", "--no-access-log"),
                    *("--ws-per-message-deflate", "false"),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def start(self, *, limit: float = 45.0) -> None:
        """`spawn()`, then wait until ready; a port taken meanwhile: try another."""
        start_all([self], limit=limit)

    def _wait_ready(self, limit: float) -> bool:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def start_all(apps: list[AppProcess], *, limit: float = 45.0) -> None:
    """Spawn every app at once (startup is the slow part), then wait for each; an app
    that fails to come up (its port was taken meanwhile) is respawned, twice at most."""
    for app in apps:
        app.spawn()
    for app in apps:
        for attempt in range(3):
            if app._wait_ready(limit):
                break
            app.stop()
            if attempt == 2:
                raise RuntimeError(f"uvicorn did not start: {app.logfile.read_text()[-2000:]}")
            app.spawn()
