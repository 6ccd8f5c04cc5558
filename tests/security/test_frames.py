"""Hostile frames, floods and silence against the quickstart app over real uvicorn.

Each attack gets a documented answer: a close code (1009, 1007, 1002, 1008, 4429, 4408)
or an ``error`` envelope that leaves the connection open. None ends in 1011, and the
connection is released every time.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from types import ModuleType
from typing import Any
from uuid import uuid4

import pytest
from websockets.asyncio.client import ClientConnection, connect

from tempest_ws import CloseCode
from tempest_ws.testing import serve
from tests.helpers.hardening import CONT, TEXT, RawClient, next_of_type, until_closed
from tests.helpers.support import token, until, ws_url
from tests.security._support import bearer

pytestmark = pytest.mark.e2e

Loader = Callable[..., ModuleType]
LIMIT = 1024


async def error_code(ws: ClientConnection, frame: str | bytes) -> Any:
    """Send ``frame``; return the ``code`` of the ``error`` envelope that answers it."""
    await ws.send(frame)
    return (await next_of_type(ws, "error"))["data"]["code"]


async def still_open(ws: ClientConnection, user: Any, minimal: ModuleType) -> None:
    """The connection still works: a room round trip comes back."""
    minimal.room_members["check"] = {user}
    await ws.send(json.dumps({"type": "subscribe", "data": {"topic": "room:check"}}))
    await ws.send(json.dumps({"type": "chat.message", "data": {"room": "check", "text": "ok"}}))
    assert (await next_of_type(ws, "chat.message"))["data"]["text"] == "ok"


async def test_oversized_text_frame_closes_1009(load_minimal: Loader) -> None:
    minimal = load_minimal(WS_MAX_MESSAGE_BYTES=LIMIT)
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        async with connect(ws_url(base), subprotocols=bearer()) as ws:
            await next_of_type(ws, "hello")
            await ws.send(json.dumps({"type": "chat.message", "data": {"text": "x" * LIMIT}}))
            _, code, _ = await until_closed(ws)
        assert code == CloseCode.MESSAGE_TOO_BIG
        await until(lambda: minimal.hub.stats().connections == 0)


async def test_oversized_fragmented_message_closes_1009(load_minimal: Loader) -> None:
    minimal = load_minimal(WS_MAX_MESSAGE_BYTES=LIMIT)
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        async with connect(ws_url(base), subprotocols=bearer()) as ws:
            await next_of_type(ws, "hello")
            await ws.send(['{"type":"x","data":"', *(["y" * 200] * 8), '"}'])
            _, code, _ = await until_closed(ws)
        assert code == CloseCode.MESSAGE_TOO_BIG


async def test_fragment_announcing_too_much_closes_1009_before_its_payload(
    load_minimal: Loader,
) -> None:
    minimal = load_minimal(WS_MAX_MESSAGE_BYTES=LIMIT)
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        client = await RawClient.connect(base, token=token(str(uuid4())))
        assert client.status == 101
        await client.send_frame(TEXT, b'{"type":"x","data":"' + b"y" * 600, fin=False)
        # 16 MiB announced, never sent: only the header can be judged.
        await client.send(struct.pack("!BBQ", CONT, 0x80 | 127, 16 << 20) + b"\x00" * 4)
        _, closing = await client.frames_until_close()
        await client.close()
        assert closing is not None
        assert closing.close_code == CloseCode.MESSAGE_TOO_BIG
        await until(lambda: minimal.hub.stats().connections == 0)


async def test_binary_frame_gets_an_error_envelope(load_minimal: Loader) -> None:
    minimal = load_minimal()
    user = uuid4()
    async with (
        serve(minimal.app, settings=minimal.ws_settings) as base,
        connect(ws_url(base), subprotocols=bearer(user)) as ws,
    ):
        await next_of_type(ws, "hello")
        assert await error_code(ws, b'{"type":"subscribe"}') == "binary_not_supported"
        assert await error_code(ws, b"\x00\xff\xfe") == "binary_not_supported"
        await still_open(ws, user, minimal)


@pytest.mark.parametrize("fragmented", [False, True], ids=["whole", "across-fragments"])
async def test_invalid_utf8_text_closes_1007(load_minimal: Loader, fragmented: bool) -> None:
    minimal = load_minimal()
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        client = await RawClient.connect(base, token=token(str(uuid4())))
        assert client.status == 101
        if fragmented:  # a two-byte sequence cut in half, then an invalid continuation
            await client.send_frame(TEXT, b'{"type":"x","data":"\xc3', fin=False)
            await client.send_frame(CONT, b'\x28"}')
        else:
            await client.send_frame(TEXT, b'{"type":"x","data":"\xff\xfe"}')
        _, closing = await client.frames_until_close()
        await client.close()
        assert closing is not None
        assert closing.close_code == CloseCode.INVALID_PAYLOAD
        await until(lambda: minimal.hub.stats().connections == 0)


async def test_unmasked_client_frame_closes_1002(load_minimal: Loader) -> None:
    minimal = load_minimal()
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        client = await RawClient.connect(base, token=token(str(uuid4())))
        await client.send_frame(TEXT, b'{"type":"x"}', mask=False)
        _, closing = await client.frames_until_close()
        await client.close()
        assert closing is not None
        assert closing.close_code == CloseCode.PROTOCOL_ERROR


async def test_malformed_json_gets_an_error_envelope(load_minimal: Loader) -> None:
    minimal = load_minimal()
    user = uuid4()
    async with (
        serve(minimal.app, settings=minimal.ws_settings) as base,
        connect(ws_url(base), subprotocols=bearer(user)) as ws,
    ):
        await next_of_type(ws, "hello")
        # Nine invalid frames: one under the ten that close the connection 1008.
        for frame in ("{not json", '{"type": "x"', "NaN", '{"type":"x"}}'):
            assert await error_code(ws, frame) == "invalid_json", frame
        for frame in ("[1, 2]", '"text"', "null", '{"data": {}}', '{"type": 7}'):
            assert await error_code(ws, frame) == "invalid_envelope", frame
        await still_open(ws, user, minimal)


async def test_unknown_envelope_type_gets_an_error_envelope(load_minimal: Loader) -> None:
    minimal = load_minimal()
    user = uuid4()
    async with (
        serve(minimal.app, settings=minimal.ws_settings) as base,
        connect(ws_url(base), subprotocols=bearer(user)) as ws,
    ):
        await next_of_type(ws, "hello")
        for kind in ("admin.shutdown", "__proto__", "Subscribe", "subscribe\u0000"):
            assert await error_code(ws, json.dumps({"type": kind})) == "unknown_type"
        await still_open(ws, user, minimal)


async def test_ten_invalid_frames_close_1008(load_minimal: Loader) -> None:
    minimal = load_minimal()
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        async with connect(ws_url(base), subprotocols=bearer()) as ws:
            await next_of_type(ws, "hello")
            for _ in range(10):
                await ws.send("{not json")
            seen, code, _ = await until_closed(ws)
        assert code == CloseCode.POLICY_VIOLATION
        assert {frame["data"]["code"] for frame in seen if frame["type"] == "error"} <= {
            "invalid_json"
        }


async def test_message_flood_closes_4429(load_minimal: Loader) -> None:
    minimal = load_minimal(WS_RATE_LIMIT_MESSAGES=20, WS_RATE_LIMIT_WINDOW_SECONDS=60)
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        async with connect(ws_url(base), subprotocols=bearer()) as ws:
            await next_of_type(ws, "hello")
            flood = json.dumps({"type": "ping", "data": {}})
            for _ in range(200):  # ten times the budget, well inside one window
                await ws.send(flood)
            _, code, reason = await until_closed(ws)
        assert (code, reason) == (CloseCode.RATE_LIMITED, "rate_limited")
        await until(lambda: minimal.hub.stats().connections == 0)


async def test_silent_client_closes_4408(load_minimal: Loader) -> None:
    minimal = load_minimal(WS_HEARTBEAT_SECONDS=0.1, WS_HEARTBEAT_TIMEOUT_SECONDS=0.5)
    async with serve(minimal.app, settings=minimal.ws_settings) as base:
        async with connect(ws_url(base), subprotocols=bearer()) as ws:
            seen, code, _ = await until_closed(ws)  # never answers a ping
        assert code == CloseCode.HEARTBEAT_TIMEOUT
        assert [frame["type"] for frame in seen][:2] == ["hello", "ping"]
        await until(lambda: minimal.hub.stats().connections == 0)
