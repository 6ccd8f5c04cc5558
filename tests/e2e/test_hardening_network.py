"""A network that goes away without a word: no close frame, no FIN, no RST.

A loopback proxy stands between client and server and, at a chosen moment, stops moving
bytes in both directions while keeping both sockets open. The server can only learn from
the silence: the heartbeat deadline closes the connection 4408, and everything the
connection held (registry entry, subscriptions, per-user and per-address counts, tasks)
is released.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from websockets.asyncio.client import connect

from tempest_ws import CloseCode
from tempest_ws.testing import serve
from tests.helpers.hardening import (
    BOUND,
    BlackholeProxy,
    build_router_app,
    next_of_type,
    tempest_tasks,
)
from tests.helpers.support import make_settings, token, until, ws_url

pytestmark = pytest.mark.e2e


async def test_blackholed_client_is_closed_4408_and_fully_released(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(
        WS_HEARTBEAT_SECONDS=0.2,
        WS_HEARTBEAT_TIMEOUT_SECONDS=0.8,
        WS_CLOSE_TIMEOUT_SECONDS=0.5,
        WS_MAX_CONNECTIONS_PER_IP=10,
    )
    app, hub, router = build_router_app(settings)
    async with serve(app, settings=settings) as base:
        host, port = base.removeprefix("http://").split(":")
        baseline = hub.stats()
        async with (
            BlackholeProxy(host, int(port)) as proxy,
            connect(
                ws_url(proxy.base),
                subprotocols=["bearer", token("vanishing")],  # type: ignore[list-item]
                ping_interval=None,  # the client library must not notice either
                close_timeout=0.1,
            ) as ws,
        ):
            hello = await next_of_type(ws, "hello")
            await ws.send(json.dumps({"type": "subscribe", "data": {"topic": "news"}}))
            await next_of_type(ws, "subscribed")
            [connection] = hub.connections_of("vanishing")
            assert connection.connection_id == hello["data"]["connection_id"]
            assert hub.stats().topics == 1

            proxy.blackhole()
            await asyncio.wait_for(connection.wait_closed(), BOUND)
            assert connection.close_code == CloseCode.HEARTBEAT_TIMEOUT
            await until(lambda: hub.stats().connections == baseline.connections)
            stats = hub.stats()
            assert (stats.users, stats.topics, stats.subscriptions) == (0, 0, 0)
            await until(lambda: tempest_tasks() == [])
            endpoint = router._tempest_endpoint
            await until(lambda: endpoint.addresses.counts == {})
            assert router.connection_count() == 0
    record = next(r for r in caplog.records if "heartbeat_timeout" in r.getMessage())
    assert connection.connection_id in record.getMessage()
