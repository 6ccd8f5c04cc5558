"""Event handlers slower than their client: reading pauses, the heartbeat does not close.

While a connection's in-order handler queue is full the router stops reading that
connection (backpressure through TCP), so the client's frames, pongs included, wait
unread in the socket. The heartbeat must count that as the application's delay, not the
peer's silence: the connection stays open and every request is answered.
"""

from __future__ import annotations

import asyncio

from fastapi import FastAPI
from pydantic import BaseModel

from tempest_ws import WebSocketHub, jwt_bearer_resolver, make_websocket_router
from tempest_ws.testing import live_server
from tests.helpers.support import make_settings, token

REQUESTS = 80  # more than the 64 messages an in-order queue holds
FIRST = 1.5  # seconds the first message takes: three heartbeat timeouts with a full queue


class Work(BaseModel):
    n: int


async def test_a_full_handler_queue_is_not_a_silent_peer() -> None:
    settings = make_settings(WS_HEARTBEAT_SECONDS=0.2, WS_HEARTBEAT_TIMEOUT_SECONDS=0.5)
    hub = WebSocketHub.from_settings(settings)
    router = make_websocket_router(
        hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
    )

    @router.on("work")
    async def work(message: Work) -> Work:
        if message.n == 0:
            await asyncio.sleep(FIRST)
        return message

    app = FastAPI()
    app.include_router(router)
    async with live_server(app, settings=settings) as server, server.connect(token("ann")) as ann:
        for n in range(REQUESTS):
            await ann.send_envelope("work", {"n": n}, request_id=str(n))
        answered = [(await ann.expect("work.reply", timeout=10)).data["n"] for _ in range(REQUESTS)]
        assert answered == list(range(REQUESTS))
        await ann.send_envelope("work", {"n": -1}, request_id="last")
        assert (await ann.expect("work.reply", timeout=10)).data == {"n": -1}
