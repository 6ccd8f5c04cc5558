"""Abuse limits over a real uvicorn socket: inbound rate limit and the per-address cap.

The rate-limit tests pace themselves on the server's answers, never on sleeps alone: a
burst ends with a frame the handler echoes, and the next window starts only after that
echo arrived (so the server has read the whole burst). A loaded machine can only make
the client slower, which refills the bucket further; it cannot turn a pass into a fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tempest_ws import CloseCode
from tempest_ws.testing import serve
from tests.helpers.hardening import BOUND, next_of_type, until_closed
from tests.helpers.support import build_app, make_settings, token, until, ws_url

pytestmark = pytest.mark.e2e

BUDGET, WINDOW = 10, 1.0


def limited_settings(**overrides: Any) -> Any:
    return make_settings(
        WS_RATE_LIMIT_MESSAGES=BUDGET, WS_RATE_LIMIT_WINDOW_SECONDS=WINDOW, **overrides
    )


async def test_flood_at_ten_times_the_budget_closes_4429_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = limited_settings()
    app, hub = build_app(settings)
    async with serve(app, settings=settings) as base:
        async with connect(ws_url(base), subprotocols=["bearer", token("flooder")]) as ws:  # type: ignore[list-item]
            hello = await next_of_type(ws, "hello")
            with contextlib.suppress(ConnectionClosed):  # the server may close mid-flood
                for i in range(BUDGET * 10):
                    await ws.send(json.dumps({"type": "echo", "data": i}))
            echoed, code, reason = await until_closed(ws)
        assert (code, reason) == (CloseCode.RATE_LIMITED, "rate_limited")
        assert len([f for f in echoed if f["type"] == "echo"]) <= BUDGET
        await until(lambda: hub.stats().connections == 0)
    record = next(r for r in caplog.records if "rate_limited" in r.getMessage())
    assert hello["data"]["connection_id"] in record.getMessage()


async def test_exactly_the_budget_for_three_windows_stays_open() -> None:
    settings = limited_settings()
    app, hub = build_app(settings)
    async with serve(app, settings=settings) as base:
        async with connect(ws_url(base), subprotocols=["bearer", token("steady")]) as ws:  # type: ignore[list-item]
            await next_of_type(ws, "hello")
            for window in range(3):
                for i in range(BUDGET):  # pings and pongs count: use both
                    kind = ("ping", "pong", "echo")[i % 3] if i < BUDGET - 1 else "echo"
                    await ws.send(json.dumps({"type": kind, "data": [window, i]}))
                # The last echo proves the server read the whole burst before we wait.
                async with asyncio.timeout(BOUND):
                    while (await next_of_type(ws, "echo"))["data"] != [window, BUDGET - 1]:
                        pass
                # The budget refills over one window, measured from that read onwards.
                await asyncio.sleep(WINDOW * 1.1)
            await ws.send(json.dumps({"type": "echo", "data": "still open"}))
            assert (await next_of_type(ws, "echo"))["data"] == "still open"
            assert hub.stats().connections == 1
        await until(lambda: hub.stats().connections == 0)


async def test_rate_limit_zero_disables_it() -> None:
    settings = make_settings(WS_RATE_LIMIT_MESSAGES=0)
    app, _ = build_app(settings)
    async with (
        serve(app, settings=settings) as base,
        connect(ws_url(base), subprotocols=["bearer", token()]) as ws,  # type: ignore[list-item]
    ):
        await next_of_type(ws, "hello")
        for i in range(2000):
            await ws.send(json.dumps({"type": "pong", "data": i}))
        await ws.send(json.dumps({"type": "echo", "data": "after 2000"}))
        assert (await next_of_type(ws, "echo"))["data"] == "after 2000"


async def test_per_address_cap_refuses_with_http_429_and_frees_slots() -> None:
    settings = make_settings(WS_MAX_CONNECTIONS_PER_IP=2)
    app, hub = build_app(settings)
    async with serve(app, settings=settings) as base:
        url = ws_url(base)
        first = await connect(url, subprotocols=["bearer", token("a")])  # type: ignore[list-item]
        second = await connect(url, subprotocols=["bearer", token("b")])  # type: ignore[list-item]
        for ws in (first, second):
            await next_of_type(ws, "hello")
        # A spoofed X-Forwarded-For changes nothing: no proxy is trusted.
        with pytest.raises(InvalidStatus) as refused:
            await connect(
                url,
                subprotocols=["bearer", token("c")],  # type: ignore[list-item]
                additional_headers={"X-Forwarded-For": "203.0.113.50"},
            )
        assert refused.value.response.status_code == 429
        await first.close()
        await until(lambda: hub.stats().connections == 1)
        async with connect(url, subprotocols=["bearer", token("c")]) as third:  # type: ignore[list-item]
            await next_of_type(third, "hello")
        await second.close()
        await until(lambda: hub.stats().connections == 0)


async def test_forwarded_for_counts_only_behind_a_trusted_proxy() -> None:
    settings = make_settings(WS_MAX_CONNECTIONS_PER_IP=1, WS_TRUSTED_PROXIES="127.0.0.1")
    app, hub = build_app(settings)
    async with serve(app, settings=settings) as base:
        url = ws_url(base)
        opened = []
        for client in ("203.0.113.1", "203.0.113.2"):
            ws = await connect(
                url,
                subprotocols=["bearer", token(client)],  # type: ignore[list-item]
                additional_headers={"X-Forwarded-For": client},
            )
            await next_of_type(ws, "hello")
            opened.append(ws)
        with pytest.raises(InvalidStatus) as refused:
            await connect(
                url,
                subprotocols=["bearer", token("again")],  # type: ignore[list-item]
                additional_headers={"X-Forwarded-For": "203.0.113.1"},
            )
        assert refused.value.response.status_code == 429
        for ws in opened:
            await ws.close()
        await until(lambda: hub.stats().connections == 0)
