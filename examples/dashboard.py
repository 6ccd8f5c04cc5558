"""A live dashboard: the server pushes a metrics snapshot every second.

Browsers connect to ``/ws`` and subscribe to the ``dashboard`` topic (the router's
``subscribe`` built-in answers them). A background task, owned by the app's lifespan,
broadcasts ``{"type": "metrics", "data": {"seq": n, "hub": {...}, "cluster": {...}}}``
(`tempest_ws.metrics.hub_snapshot()`) to that topic every ``interval`` seconds; it is
cancelled and awaited on shutdown, before the hub stops. ``GET /`` is the page,
``GET /health`` the same snapshot as JSON and ``GET /metrics`` the Prometheus view.

``POST /api/token`` is **development only**: it signs a token for an anonymous viewer
with ``WS_JWT_SECRET`` (random when unset). Keep the demo on loopback.

Run it (then open http://127.0.0.1:8000)::

    python -m examples.dashboard
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, WebSocket
from fastapi.responses import FileResponse
from pydantic import SecretStr

from tempest_ws import (
    BackplaneError,
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.metrics import WebSocketMetrics, add_metrics_route, hub_snapshot
from tempest_ws.testing import make_token

logger = logging.getLogger("examples.dashboard")

STATIC_DIR = Path(__file__).with_name("dashboard_static")
DASHBOARD_TOPIC = "dashboard"
METRICS = "metrics"


# --8<-- [start:push]
async def push_snapshots(hub: WebSocketHub, *, interval: float) -> None:
    """Broadcast a numbered snapshot to the ``dashboard`` topic every ``interval`` s."""
    seq = 0
    while True:
        await asyncio.sleep(interval)
        seq += 1
        envelope = {"type": METRICS, "data": {"seq": seq, **hub_snapshot(hub)}}
        try:
            await hub.broadcast(envelope, topic=DASHBOARD_TOPIC)
        except BackplaneError as exc:  # local subscribers have it; other nodes may not
            logger.warning("snapshot %d not sent to other nodes: %s", seq, exc)


def pusher(hub: WebSocketHub, *, interval: float, metrics: WebSocketMetrics) -> APIRouter:
    """A router whose lifespan owns the push task. Included after the WebSocket router,
    its lifespan runs inside the router's: the task stops before the hub does."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        task = asyncio.create_task(push_snapshots(hub, interval=interval), name="dashboard")
        app.state.push_task = task
        try:
            yield
        finally:
            task.cancel()
            try:
                with contextlib.suppress(asyncio.CancelledError):
                    await task  # a task that died re-raises its exception here
            finally:
                metrics.close()

    return APIRouter(lifespan=lifespan)


# --8<-- [end:push]


def dashboard_only(connection: WebSocketConnection, topic: str) -> bool:
    """The topic authorizer: viewers may subscribe to the dashboard, nothing else."""
    return topic == DASHBOARD_TOPIC


async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """Push-only: the router answers ``subscribe``; anything else is ignored."""
    async for _ in ws.iter_text():
        pass


def create_app(settings: WebSocketSettings | None = None, *, interval: float = 1.0) -> FastAPI:
    """The dashboard app; ``interval`` is the seconds between two pushes."""
    settings = settings or WebSocketSettings()
    secret = settings.WS_JWT_SECRET
    if secret is None:
        logger.warning("WS_JWT_SECRET is not set: using a random secret for this process")
        secret = SecretStr(secrets.token_urlsafe(32))
        settings = settings.model_copy(update={"WS_JWT_SECRET": secret})
    hub = WebSocketHub.from_settings(settings)
    app = FastAPI()
    app.state.hub = hub
    app.include_router(
        make_websocket_router(
            handler,
            hub=hub,
            bearer_resolver=jwt_bearer_resolver(settings),
            settings=settings,
            builtins=("subscribe", "unsubscribe"),
            topic_authorizer=dashboard_only,
        )
    )
    # --8<-- [start:metrics]
    metrics = add_metrics_route(app, hub)  # GET /metrics
    # --8<-- [end:metrics]
    app.include_router(pusher(hub, interval=interval, metrics=metrics))

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    # --8<-- [start:health]
    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", **hub_snapshot(hub)}

    # --8<-- [end:health]

    @app.post("/api/token")
    async def viewer_token() -> dict[str, str]:
        """Dev-only: a signed token for an anonymous viewer (never do this in production)."""
        viewer = f"viewer-{secrets.token_hex(4)}"
        return {"token": make_token(viewer, secret=secret.get_secret_value())}

    return app


def main() -> None:
    """``python -m examples.dashboard``: serve on ``DASHBOARD_HOST:DASHBOARD_PORT``."""
    from tempest_ws.server import run

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    host = os.environ.get("DASHBOARD_HOST", "127.0.0.1")
    port = int(os.environ.get("DASHBOARD_PORT", "8000"))
    settings = WebSocketSettings()
    logger.info("dashboard on http://%s:%d", host, port)
    run(create_app(settings), settings=settings, host=host, port=port)


if __name__ == "__main__":
    main()
