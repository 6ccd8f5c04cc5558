"""A plain ``uvicorn app:app`` (compression on, 16 MiB messages) is detected and tightened.

The server runs with uvicorn's own defaults instead of ``uvicorn_options``. The router
declines the permessage-deflate every client offers, lowers the message limit to
``WS_MAX_MESSAGE_BYTES`` for its connections, logs one ERROR naming the fix, and counts
every such connection in the health snapshot and the metrics.
"""

from __future__ import annotations

import logging

import pytest
from websockets.asyncio.client import connect

from tempest_ws.codes import CloseCode
from tempest_ws.metrics import WebSocketMetrics, hub_snapshot
from tempest_ws.testing import serve
from tests.helpers.hardening import TEXT, RawClient, build_router_app, next_of_type, until_closed
from tests.helpers.support import make_settings, token, ws_url
from tests.security._servers import UNSAFE_OPTIONS, WS_PROTOCOLS

pytestmark = pytest.mark.e2e

LIMIT = 4096


def _errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "tempest_ws" and r.levelno == logging.ERROR
    ]


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_plain_uvicorn_is_reported_once_and_tightened(
    ws: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(WS_MAX_MESSAGE_BYTES=LIMIT)
    app, hub, _ = build_router_app(settings)
    with WebSocketMetrics(hub) as metrics:
        async with serve(app, ws=ws, **UNSAFE_OPTIONS) as base:
            url = ws_url(base)
            bearer = ["bearer", token("alice")]
            # websockets' client offers permessage-deflate, as every browser does.
            for _ in range(2):
                async with connect(url, subprotocols=bearer) as client:  # type: ignore[arg-type]
                    await next_of_type(client, "hello")
                    assert client.protocol.extensions == []  # declined at the handshake
            # A message over WS_MAX_MESSAGE_BYTES is refused by the WebSocket layer
            # itself (not buffered up to 16 MiB first): 1009 without the router's reason.
            async with connect(url, subprotocols=bearer, compression=None) as client:  # type: ignore[arg-type]
                await next_of_type(client, "hello")
                await client.send("x" * (LIMIT * 4))
                _, code, reason = await until_closed(client)
            assert code == CloseCode.MESSAGE_TOO_BIG
            assert reason != "message too big"  # the router's reason: it never saw the frame

        errors = _errors(caplog)
        assert len(errors) == 1, errors
        for fix in ("tempest_ws.run", "uvicorn_options(settings)", f"--ws-max-size {LIMIT}"):
            assert fix in errors[0]
        assert "--ws-per-message-deflate false --ws-ping-interval 0" in errors[0]
        assert ws in errors[0]

        server = hub_snapshot(hub)["server"]
        assert server["protocol"] == ws
        assert server["unsafe_connections"] == 3
        assert server["compression_declined"] == 2
        assert server["size_limit_lowered"] == 3
        body, _ = metrics.render()
        assert b"tempest_ws_unsafe_server_connections_total 3.0" in body


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_a_compressed_frame_is_refused_on_plain_uvicorn(ws: str) -> None:
    """The deflate bomb: with compression declined, a frame with RSV1 set is a protocol
    error (1002) and is never inflated."""
    settings = make_settings(WS_MAX_MESSAGE_BYTES=LIMIT)
    app, _, _ = build_router_app(settings)
    async with serve(app, ws=ws, **UNSAFE_OPTIONS) as base:
        raw = await RawClient.connect(
            base,
            token=token("alice"),
            headers=[("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")],
        )
        try:
            assert raw.status == 101
            assert "sec-websocket-extensions" not in raw.response_headers
            # 1 KB of zeros deflated: inflates to far more than it weighs.
            await raw.send_frame(TEXT, b"\x02\x00" * 8, rsv=0b100)
            _, closing = await raw.frames_until_close()
            assert closing is not None
            assert closing.close_code == CloseCode.PROTOCOL_ERROR
        finally:
            await raw.close()


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_safe_options_log_nothing(ws: str, caplog: pytest.LogCaptureFixture) -> None:
    settings = make_settings(WS_MAX_MESSAGE_BYTES=LIMIT)
    app, hub, _ = build_router_app(settings)
    bearer = ["bearer", token("alice")]
    async with (
        serve(app, settings=settings, ws=ws) as base,
        connect(ws_url(base), subprotocols=bearer) as client,  # type: ignore[arg-type]
    ):
        await next_of_type(client, "hello")
        assert client.protocol.extensions == []
    assert _errors(caplog) == []
    server = hub_snapshot(hub)["server"]
    assert server["protocol"] == ws
    assert server["unsafe_connections"] == 0
