"""Protocol edges over a real socket, with frames written byte by byte.

What the server must do with a hostile client: refuse a fragmented message as soon as
its running total passes the limit (not after buffering it whole), close 1007 on invalid
UTF-8, 1002 on protocol violations, never negotiate compression, and never let a
multi-byte text slip past the router's own size guard.
"""

from __future__ import annotations

import contextlib
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tempest_ws import CloseCode, WebSocketSettings
from tempest_ws.testing import serve
from tests.helpers.hardening import BINARY, CONT, TEXT, RawClient, ServerFrame, until_closed
from tests.helpers.support import build_app, make_settings, token, until, ws_url

pytestmark = pytest.mark.e2e

LIMIT = 1024


def settings_with_limit(**overrides: Any) -> WebSocketSettings:
    return make_settings(WS_MAX_MESSAGE_BYTES=LIMIT, **overrides)


async def opened(base: str, subject: str = "raw") -> RawClient:
    """A raw client past the handshake and the ``hello`` frame."""
    client = await RawClient.connect(base, token=token(subject))
    assert client.status == 101
    hello = await client.read_frame()
    assert hello is not None
    assert json.loads(hello.payload)["type"] == "hello"
    return client


async def close_frame(client: RawClient) -> ServerFrame:
    _, closing = await client.frames_until_close()
    assert closing is not None, "the server dropped the connection without a close frame"
    return closing


async def test_fragment_header_past_the_limit_closes_1009_before_its_payload_arrives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = settings_with_limit()
    app, hub = build_app(settings)
    async with serve(app, settings=settings) as base:
        client = await opened(base)
        await client.send_frame(TEXT, b'{"type":"echo","data":"' + b"x" * 600, fin=False)
        # A continuation that claims 16 MiB, of which not one byte is ever sent: the
        # server can only answer by judging the header against the running total.
        await client.send(struct.pack("!BBQ", CONT, 0x80 | 127, 16 << 20) + b"\x00" * 4)
        closing = await close_frame(client)
        assert closing.close_code == CloseCode.MESSAGE_TOO_BIG
        await client.close()
        await until(lambda: hub.stats().connections == 0)
    assert "message_too_big" in caplog.text


async def test_websockets_fragmented_send_past_the_limit_closes_1009() -> None:
    settings = settings_with_limit()
    app, hub = build_app(settings)

    async def fragments() -> AsyncIterator[str]:
        yield '{"type":"echo","data":"'
        for _ in range(5):
            yield "y" * 400  # the total passes 1024 at the third fragment
        yield '"}'

    async with (
        serve(app, settings=settings) as base,
        connect(ws_url(base), subprotocols=["bearer", token()]) as ws,  # type: ignore[list-item]
    ):
        assert json.loads(await ws.recv())["type"] == "hello"
        with contextlib.suppress(ConnectionClosed):  # the server may close mid-send
            await ws.send(fragments())
        seen, code, _ = await until_closed(ws)
        assert code == CloseCode.MESSAGE_TOO_BIG
        assert all(envelope["type"] != "echo" for envelope in seen)
    await until(lambda: hub.stats().connections == 0)


async def test_fragmented_message_under_the_limit_is_reassembled() -> None:
    settings = settings_with_limit()
    app, _ = build_app(settings)
    async with serve(app, settings=settings) as base:
        client = await opened(base)
        euro = "€".encode()  # three bytes, split across two fragments
        await client.send_frame(TEXT, b'{"type":"echo","data":"' + euro[:1], fin=False)
        await client.send_frame(CONT, euro[1:], fin=False)
        await client.send_frame(CONT, b'"}', fin=True)
        echoed = await client.read_frame()
        assert echoed is not None
        assert json.loads(echoed.payload)["data"] == "€"
        await client.close()


async def test_router_guard_refuses_a_whole_fragmented_message_without_ws_max_size() -> None:
    settings = settings_with_limit()
    app, _ = build_app(settings)
    async with serve(app) as base:  # uvicorn's default 16 MiB: only the router guards
        client = await opened(base)
        await client.send_frame(TEXT, b'{"type":"echo","data":"' + b"z" * 1000, fin=False)
        await client.send_frame(CONT, b"z" * 1000 + b'"}', fin=True)
        closing = await close_frame(client)
        assert closing.close_code == CloseCode.MESSAGE_TOO_BIG
        await client.close()


async def test_multibyte_text_cannot_slip_past_the_router_guard() -> None:
    settings = settings_with_limit()
    app, _ = build_app(settings)
    async with serve(app) as base:
        client = await opened(base)
        text = '{"type":"echo","data":"' + "€" * 400 + '"}'  # 426 characters, 1226 bytes
        await client.send_frame(TEXT, text.encode())
        closing = await close_frame(client)
        assert closing.close_code == CloseCode.MESSAGE_TOO_BIG
        await client.close()


@pytest.mark.parametrize("fragmented", [False, True], ids=["single", "fragmented"])
async def test_invalid_utf8_closes_1007(fragmented: bool, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_with_limit()
    app, hub = build_app(settings)
    async with serve(app, settings=settings) as base:
        client = await opened(base)
        if fragmented:  # each fragment fine on its own terms, the joined text is not
            await client.send_frame(TEXT, b'{"type":"echo","data":"\xe2', fin=False)
            await client.send_frame(CONT, b'("}', fin=True)
        else:
            await client.send_frame(TEXT, b'{"type":"echo","data":"\xff\xfe"}')
        closing = await close_frame(client)
        assert closing.close_code == CloseCode.INVALID_PAYLOAD
        await client.close()
        await until(lambda: hub.stats().connections == 0)
    assert "invalid_utf8" in caplog.text


async def test_protocol_violations_close_1002_and_binary_gets_the_error_envelope() -> None:
    settings = settings_with_limit()
    app, hub = build_app(settings)
    async with serve(app, settings=settings) as base:
        client = await opened(base)
        await client.send_frame(BINARY, b"\x00\x01")
        error = await client.read_frame()
        assert error is not None
        assert json.loads(error.payload)["data"]["code"] == "binary_not_supported"
        await client.send_frame(TEXT, b'{"type":"echo"}', mask=False)  # clients must mask
        closing = await close_frame(client)
        assert closing.close_code == CloseCode.PROTOCOL_ERROR
        await client.close()
        await until(lambda: hub.stats().connections == 0)


async def test_compression_is_never_negotiated_and_compressed_frames_are_refused() -> None:
    settings = settings_with_limit()
    app, _ = build_app(settings)
    async with serve(app, settings=settings) as base:
        client = await RawClient.connect(
            base,
            token=token(),
            headers=[("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")],
        )
        assert client.status == 101
        assert "sec-websocket-extensions" not in client.response_headers
        assert await client.read_frame() is not None  # hello
        # RSV1 marks a compressed frame: without the extension it is a protocol error,
        # so a small deflate bomb is never inflated.
        await client.send_frame(TEXT, b"\x4b\x04\x00", rsv=0b100)
        closing = await close_frame(client)
        assert closing.close_code == CloseCode.PROTOCOL_ERROR
        await client.close()
