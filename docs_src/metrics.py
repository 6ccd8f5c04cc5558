"""docs/metrics.md: a worker's lifespan running the metrics sampler."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI

from tempest_ws import WebSocketHub
from tempest_ws.metrics import WebSocketMetrics


def create_app(hub: WebSocketHub) -> tuple[FastAPI, WebSocketMetrics]:
    """An app whose lifespan syncs the hub's numbers into ``metrics`` every 5 s."""
    metrics = WebSocketMetrics(hub)

    # --8<-- [start:lifespan]
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with metrics.sampling(interval=5.0):  # sync every 5 s; cancelled on shutdown
            yield
    # --8<-- [end:lifespan]

    return FastAPI(lifespan=lifespan), metrics
