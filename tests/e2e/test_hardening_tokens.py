"""Token lifecycle over a real socket: expiry mid-connection, in-band refresh, revocation.

Tokens here live a few seconds (``exp`` has one-second resolution, so "3 s" means 2 to
3 s). Nothing asserts how fast the server reacts; the only time check is that a close
for expiry never comes *before* the token's ``exp``, which load cannot break.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from fastapi import WebSocket
from websockets.asyncio.client import ClientConnection, connect

from tempest_ws import CloseCode, WebSocketConnection, WebSocketHub
from tempest_ws.router._expiry import token_expiry
from tempest_ws.testing import serve
from tests.helpers.hardening import BOUND, next_of_type, until_closed
from tests.helpers.support import build_app, make_settings, token, until, ws_url

pytestmark = pytest.mark.e2e

SHORT = 3.0  # seconds a short-lived token lives (at least 2: exp is truncated)


async def recording_handler(
    ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub
) -> None:
    """Answers every envelope it is handed with ``seen`` and its type."""
    while True:
        message = await ws.receive_json()
        await ws.send_json({"type": "seen", "data": message.get("type")})


async def close_of(ws: ClientConnection) -> tuple[int, str, list[str]]:
    """Read until the close frame: (code, reason, types of the envelopes before it)."""
    seen, code, reason = await until_closed(ws)
    return code, reason, [envelope["type"] for envelope in seen]


async def test_token_expiry_mid_connection_closes_4401() -> None:
    settings = make_settings()
    app, hub = build_app(settings, handler=recording_handler)
    short = token("alice", expires_in=SHORT)
    expires_at = token_expiry(short)
    assert expires_at is not None
    async with (
        serve(app, settings=settings) as base,
        connect(ws_url(base), subprotocols=["bearer", short]) as ws,  # type: ignore[list-item]
    ):
        await next_of_type(ws, "hello")
        code, reason, _ = await close_of(ws)
        closed_at = time.time()
        assert (code, reason) == (CloseCode.UNAUTHORIZED, "token expired")
        assert closed_at >= expires_at - 0.25  # never early (the tolerance is clock jitter)
        await until(lambda: hub.stats().connections == 0)


async def test_refresh_extends_the_connection_and_is_acked() -> None:
    settings = make_settings()
    app, hub = build_app(settings, handler=recording_handler)
    short = token("alice", expires_in=SHORT)
    first_exp = token_expiry(short)
    fresh = token("alice", expires_in=3600)
    assert first_exp is not None
    async with (
        serve(app, settings=settings) as base,
        connect(ws_url(base), subprotocols=["bearer", short]) as ws,  # type: ignore[list-item]
    ):
        await next_of_type(ws, "hello")
        await ws.send(
            json.dumps({"type": "auth.refresh", "data": {"token": fresh}, "request_id": "r1"})
        )
        ack = await next_of_type(ws, "ack")
        assert ack == {
            "type": "ack",
            "data": {"type": "auth.refresh", "expires_at": token_expiry(fresh)},
            "request_id": "r1",
        }
        await until(lambda: time.time() > first_exp + 1.0, timeout=BOUND)
        await ws.send(json.dumps({"type": "after-expiry"}))
        seen = await next_of_type(ws, "seen")
        assert seen["data"] == "after-expiry"  # open past the first token's exp
        assert hub.stats().connections == 1
    await until(lambda: hub.stats().connections == 0)


@pytest.mark.parametrize(
    ("new_token", "reason"),
    [
        (lambda: token("mallory", expires_in=3600), "token subject changed"),
        (lambda: "garbage", "token refresh rejected"),
        (lambda: token("alice", expires_in=-60), "token refresh rejected"),
    ],
    ids=["other-subject", "garbage", "expired"],
)
async def test_bad_refresh_closes_4401(new_token: Any, reason: str) -> None:
    settings = make_settings()
    app, hub = build_app(settings, handler=recording_handler)
    async with (
        serve(app, settings=settings) as base,
        connect(ws_url(base), subprotocols=["bearer", token("alice")]) as ws,  # type: ignore[list-item]
    ):
        await next_of_type(ws, "hello")
        await ws.send(json.dumps({"type": "auth.refresh", "data": {"token": new_token()}}))
        code, got_reason, kinds = await close_of(ws)
    assert (code, got_reason) == (CloseCode.UNAUTHORIZED, reason)
    assert "seen" not in kinds  # the refresh never reached the handler
    await until(lambda: hub.stats().connections == 0)


async def test_malformed_refresh_gets_an_error_envelope_and_stays_open() -> None:
    settings = make_settings()
    app, _ = build_app(settings, handler=recording_handler)
    async with (
        serve(app, settings=settings) as base,
        connect(ws_url(base), subprotocols=["bearer", token("alice")]) as ws,  # type: ignore[list-item]
    ):
        await next_of_type(ws, "hello")
        await ws.send(json.dumps({"type": "auth.refresh", "data": {}, "request_id": "r9"}))
        error = await next_of_type(ws, "error")
        assert error["data"]["code"] == "invalid_refresh"
        assert error["request_id"] == "r9"
        await ws.send(json.dumps({"type": "still-here"}))
        assert (await next_of_type(ws, "seen"))["data"] == "still-here"


async def test_expiry_not_enforced_when_disabled() -> None:
    settings = make_settings(WS_ENFORCE_TOKEN_EXPIRY=False)
    app, _ = build_app(settings, handler=recording_handler)
    short = token("alice", expires_in=SHORT)
    expires_at = token_expiry(short)
    assert expires_at is not None
    async with (
        serve(app, settings=settings) as base,
        connect(ws_url(base), subprotocols=["bearer", short]) as ws,  # type: ignore[list-item]
    ):
        await next_of_type(ws, "hello")
        await until(lambda: time.time() > expires_at + 1.0, timeout=BOUND)
        await ws.send(json.dumps({"type": "late"}))
        assert (await next_of_type(ws, "seen"))["data"] == "late"


async def test_revocation_closes_every_tab_4401() -> None:
    settings = make_settings()
    app, hub = build_app(settings)
    async with serve(app, settings=settings) as base:
        tabs = [
            await connect(ws_url(base), subprotocols=["bearer", token("alice")])  # type: ignore[list-item]
            for _ in range(2)
        ]
        for ws in tabs:
            await next_of_type(ws, "hello")
        assert await hub.disconnect_user("alice") == 2
        for ws in tabs:
            code, reason, _ = await close_of(ws)
            assert (code, reason) == (CloseCode.UNAUTHORIZED, "revoked")
        await until(lambda: hub.stats().connections == 0)
