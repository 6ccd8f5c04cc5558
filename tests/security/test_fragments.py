"""A flood of empty continuation frames is cut off, and never keeps a connection alive.

The attacker opens a text message and never finishes it: thousands of zero-byte
non-final fragments, written as raw frames in one burst. Under uvicorn's
websockets-sansio protocol the router's fragment counter closes the connection 1009
``too many fragments`` at ``WS_MAX_FRAGMENTS_PER_MESSAGE``; the deprecated websockets
protocol does the same at its own 4096. Fragments never reach the application, so they
are not a sign of life either: a trickle of them ends in the heartbeat timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from tempest_ws.codes import CloseCode
from tempest_ws.metrics import hub_snapshot
from tempest_ws.testing import serve
from tests.helpers.hardening import CONT, TEXT, RawClient, build_router_app, encode_frame
from tests.helpers.support import make_settings, token, until
from tests.security._servers import WS_PROTOCOLS

pytestmark = pytest.mark.e2e

BUDGET = 64
FLOOD = 20_000  # past both limits (64 here, websockets' own 4096)


async def _opened(base: str) -> RawClient:
    client = await RawClient.connect(base, token=token("mallory"))
    assert client.status == 101
    hello = await client.read_frame()
    assert hello is not None
    assert json.loads(hello.payload)["type"] == "hello"
    return client


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_empty_continuation_flood_closes_1009(
    ws: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(WS_MAX_FRAGMENTS_PER_MESSAGE=BUDGET)
    app, hub, _ = build_router_app(settings)
    async with serve(app, settings=settings, ws=ws) as base:
        client = await _opened(base)
        try:
            flood = [encode_frame(TEXT, b"", fin=False)]
            flood += [encode_frame(CONT, b"", fin=False)] * FLOOD
            await client.send(b"".join(flood))
            _, closing = await client.frames_until_close()
            assert closing is not None, "dropped without a close frame"
            assert closing.close_code == CloseCode.MESSAGE_TOO_BIG
            assert closing.close_reason in ("too many fragments", "")
            assert await client.read_frame() is None  # and the TCP connection is gone
        finally:
            await client.close()
        if ws == "websockets-sansio":  # the deprecated protocol reports it 10 s later
            await until(lambda: hub.stats().connections == 0)
    if ws == "websockets-sansio":
        assert closing.close_reason == "too many fragments"
        assert hub_snapshot(hub)["server"]["fragment_limit_closes"] == 1
        events = [r for r in caplog.records if r.name == "tempest_ws.security"]
        assert any(getattr(r, "event", "") == "too_many_fragments" for r in events)


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_a_message_in_fragments_under_the_budget_arrives(ws: str) -> None:
    settings = make_settings(WS_MAX_FRAGMENTS_PER_MESSAGE=BUDGET)
    app, hub, _ = build_router_app(settings)
    async with serve(app, settings=settings, ws=ws) as base:
        client = await _opened(base)
        try:
            text = json.dumps({"type": "echo", "data": {"n": 1}}).encode()
            pieces = [text[i : i + 1] for i in range(len(text))]
            assert len(pieces) <= BUDGET
            frames = [encode_frame(TEXT, pieces[0], fin=False)]
            frames += [encode_frame(CONT, p, fin=False) for p in pieces[1:-1]]
            frames.append(encode_frame(CONT, pieces[-1], fin=True))
            await client.send(b"".join(frames))
            reply = await client.read_frame()
            assert reply is not None
            assert json.loads(reply.payload) == {"type": "echo", "data": {"n": 1}}
            if ws == "websockets-sansio":
                # The counter rewrites no frame: broadcasts still take the direct path.
                (connection,) = hub._registry.connections.values()
                assert connection._direct is not None
        finally:
            await client.close()


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_fragments_are_not_a_sign_of_life(ws: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tempest_ws.security")
    settings = make_settings(
        WS_HEARTBEAT_SECONDS=0.3,
        WS_HEARTBEAT_TIMEOUT_SECONDS=1.0,
        WS_MAX_FRAGMENTS_PER_MESSAGE=65536,
    )
    app, _, _ = build_router_app(settings)
    async with serve(app, settings=settings, ws=ws) as base:
        client = await _opened(base)
        try:
            await client.send(encode_frame(TEXT, b"", fin=False))
            closing = None

            async def trickle() -> None:
                for _ in range(400):  # at most ~40 s; the timeout comes after ~1 s
                    await client.send(encode_frame(CONT, b"", fin=False))
                    await asyncio.sleep(0.1)

            feeder = asyncio.create_task(trickle())
            try:
                _, closing = await client.frames_until_close(timeout=30)
            finally:
                feeder.cancel()
                await asyncio.gather(feeder, return_exceptions=True)
            assert closing is not None
            assert closing.close_code == CloseCode.HEARTBEAT_TIMEOUT
        finally:
            await client.close()
