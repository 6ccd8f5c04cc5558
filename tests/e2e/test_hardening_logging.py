"""Security events are logged with a connection id and a reason, and never leak secrets.

One scripted abusive session touches every security event (refused origin, missing and
forged tokens, malformed, binary, oversized and non-UTF-8 frames, a refresh for another
user, a flood, too many connections from one address). Every record of every logger is
captured (tempest_ws at DEBUG, uvicorn at INFO as in production) and scanned for the
tokens used, the ``bearer`` subprotocol header and the message bodies sent.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tempest_ws.testing import serve
from tests.helpers.hardening import (
    BINARY,
    TEXT,
    RawClient,
    build_router_app,
    capture_all_logs,
    next_of_type,
    until_closed,
)
from tests.helpers.support import make_settings, token, until, ws_url

pytestmark = pytest.mark.e2e

ORIGIN = "https://app.example.com"


async def test_abusive_session_logs_events_but_no_token_header_or_body() -> None:
    marker = f"BODY-{secrets.token_hex(8)}"
    settings = make_settings(
        WS_ALLOWED_ORIGINS=ORIGIN,
        WS_MAX_MESSAGE_BYTES=2048,
        WS_RATE_LIMIT_MESSAGES=20,
        WS_RATE_LIMIT_WINDOW_SECONDS=60,
        WS_MAX_CONNECTIONS_PER_IP=3,
    )
    app, hub, _ = build_router_app(settings)
    alice = token("alice")
    mallory = token("mallory")
    forged = token("alice")[:-6] + "AAAAAA"  # a bad signature
    query_token = f"QUERY-{secrets.token_hex(8)}"
    used_tokens = [alice, mallory, forged, query_token]

    async with serve(app, settings=settings, log_level="info") as base:
        with (
            capture_all_logs("tempest_ws") as logs,
            capture_all_logs("uvicorn", "uvicorn.access", level=20) as server,
        ):
            url = ws_url(base)
            bearer = ["bearer", alice]

            # A cross-site page (CSWSH): refused before accept.
            with pytest.raises(InvalidStatus):
                await connect(url, origin="https://evil.example", subprotocols=bearer)  # type: ignore[arg-type, list-item]
            # No token, a query token that is garbage, a forged token in a header.
            for options in (
                {},
                {"uri": f"{url}?token={query_token}"},
                {"additional_headers": {"Authorization": f"Bearer {forged}"}},
            ):
                async with connect(options.pop("uri", url), origin=ORIGIN, **options) as ws:  # type: ignore[arg-type]
                    await until_closed(ws)

            # Malformed, binary and oversized frames carrying the body marker.
            async with connect(url, origin=ORIGIN, subprotocols=bearer) as ws:  # type: ignore[arg-type, list-item]
                await next_of_type(ws, "hello")
                await ws.send(f"not json {marker}")
                await next_of_type(ws, "error")
                await ws.send(marker.encode())
                await next_of_type(ws, "error")
                await ws.send(json.dumps({"type": "echo", "data": marker * 200}))
                await until_closed(ws)

            # Invalid UTF-8 with the marker, written raw.
            raw = await RawClient.connect(base, token=alice, headers=[("Origin", ORIGIN)])
            await raw.read_frame()
            await raw.send_frame(TEXT, marker.encode() + b"\xff")
            await raw.frames_until_close()
            await raw.close()
            await raw.send_frame(BINARY, b"")  # after close: must not matter

            # A refresh carrying another user's token.
            async with connect(url, origin=ORIGIN, subprotocols=bearer) as ws:  # type: ignore[arg-type, list-item]
                await next_of_type(ws, "hello")
                await ws.send(json.dumps({"type": "auth.refresh", "data": {"token": mallory}}))
                await until_closed(ws)

            # A flood of bodies.
            async with connect(url, origin=ORIGIN, subprotocols=bearer) as ws:  # type: ignore[arg-type, list-item]
                await next_of_type(ws, "hello")
                with contextlib.suppress(ConnectionClosed):
                    for i in range(200):
                        await ws.send(json.dumps({"type": "echo", "data": f"{marker}-{i}"}))
                await until_closed(ws)

            # Too many connections from one address.
            await until(lambda: hub.stats().connections == 0)
            held = [await connect(url, origin=ORIGIN, subprotocols=bearer) for _ in range(3)]  # type: ignore[arg-type, list-item]
            with pytest.raises(InvalidStatus):
                await connect(url, origin=ORIGIN, subprotocols=bearer)  # type: ignore[arg-type, list-item]
            for ws in held:
                await ws.close()
            await until(lambda: hub.stats().connections == 0)

    everything = logs.text + "\n" + server.text
    for secret in [*used_tokens, marker, "bearer, ", "sec-websocket-protocol"]:
        assert secret.lower() not in everything.lower(), f"{secret[:12]}... leaked into logs"
    events = re.findall(r"security (\w+) connection=(\S+) reason=", logs.text)
    assert {event for event, _ in events} >= {
        "origin_rejected",
        "auth_failed",
        "invalid_frame",
        "message_too_big",
        "invalid_utf8",
        "auth_refresh_rejected",
        "rate_limited",
        "address_limit",
    }
    assert all(connection_id for _, connection_id in events)
    assert "token=[redacted]" in server.text  # the query token was logged, redacted
