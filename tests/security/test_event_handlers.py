"""Attacks on the event handlers (``@router.on``), over real uvicorn.

A flood of requests for a concurrent handler runs at most ``WS_MAX_CONCURRENT_HANDLERS``
of them at once; invalid ``data`` counts toward the invalid-frame limit (1008); a
handler's exception never reaches the client, which stays connected.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from fastapi import FastAPI
from pydantic import BaseModel, Field

from tempest_ws import WebSocketHub, WSEnvelope, jwt_bearer_resolver, make_websocket_router
from tempest_ws.settings import WebSocketSettings
from tempest_ws.testing import LiveClient, live_server
from tempest_ws.wire.codes import CloseCode
from tests.helpers.support import make_settings, token, until

FLOOD = 300


class Query(BaseModel):
    n: int = Field(ge=0)


def build(
    settings: WebSocketSettings,
    release: asyncio.Event,
    running: list[int],
    seen: list[int] | None = None,
) -> FastAPI:
    router = make_websocket_router(
        hub=WebSocketHub.from_settings(settings),
        bearer_resolver=jwt_bearer_resolver(settings),
        settings=settings,
    )

    @router.on("slow", concurrent=True)
    async def slow(message: Query) -> Query:
        running.append(message.n)
        if seen is not None:
            seen.append(len(running))  # how many ran at once, counted by each handler
        try:
            await release.wait()
        finally:
            running.remove(message.n)
        return message

    @router.on("leak")
    async def leak() -> None:
        raise RuntimeError("password=hunter2 at db.internal:5432")

    app = FastAPI()
    app.include_router(router)
    return app


async def test_a_flood_of_concurrent_requests_runs_at_most_the_limit() -> None:
    settings = make_settings(WS_MAX_CONCURRENT_HANDLERS=4, WS_RATE_LIMIT_MESSAGES=10_000)
    release = asyncio.Event()
    running: list[int] = []
    seen: list[int] = []
    app = build(settings, release, running, seen)
    async with live_server(app, settings=settings) as server, server.connect(token("eve")) as eve:
        frames = [
            json.dumps({"type": "slow", "data": {"n": n}, "request_id": str(n)})
            for n in range(FLOOD)
        ]
        sending = asyncio.create_task(_send_all(eve, frames))
        await until(lambda: len(running) == 4)
        release.set()  # the other requests were held back, none started
        answered = {(await eve.expect("slow.reply")).request_id for _ in range(FLOOD)}
        await sending
        assert answered == {str(n) for n in range(FLOOD)}
    assert len(seen) == FLOOD
    assert max(seen) == 4


async def _send_all(client: LiveClient, frames: list[str]) -> None:
    for frame in frames:
        await client.send(frame)


async def test_invalid_event_data_counts_toward_the_invalid_frame_limit() -> None:
    settings = make_settings()
    app = build(settings, asyncio.Event(), [])
    async with live_server(app, settings=settings) as server, server.connect(token("eve")) as eve:
        for n in range(10):
            await eve.send_envelope("slow", {"n": -1}, request_id=f"bad{n}")
        for n in range(9):
            error = await eve.expect("error")
            assert (error.data["code"], error.request_id) == ("invalid_data", f"bad{n}")
        assert await eve.expect_close() == CloseCode.POLICY_VIOLATION


async def test_a_handler_exception_is_not_sent_to_the_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings()
    app = build(settings, asyncio.Event(), [])
    async with live_server(app, settings=settings) as server, server.connect(token("eve")) as eve:
        with caplog.at_level(logging.ERROR, logger="tempest_ws.events"):
            await eve.send_envelope("leak", request_id="x")
            raw = await eve.recv()
        assert "hunter2" not in str(raw)
        assert WSEnvelope.model_validate_json(raw).data == {
            "code": "internal_error",
            "message": "internal error",
        }
        assert any(r.exc_info for r in caplog.records)
        await eve.send_envelope("leak", request_id="y")  # still connected
        assert (await eve.expect("error")).request_id == "y"
