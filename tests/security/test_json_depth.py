"""No client input forces a 1011: deep JSON in, unencodable JSON out, malformed built-ins.

Over real uvicorn with a real ``websockets`` client. A frame nested past
``WS_MAX_JSON_DEPTH`` is answered with a ``json_too_deep`` error envelope and never
reaches the handler (whose ``ws.receive_json()`` reuses the router's parse); data that
JSON cannot encode is an `UnencodableMessageError` for whoever sent it, and no
recipient is closed for it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from websockets.asyncio.client import ClientConnection, connect

from tempest_ws import (
    UnencodableMessageError,
    WebSocketConnection,
    WebSocketHub,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.testing import serve
from tests.helpers.hardening import next_of_type
from tests.helpers.support import build_app, echo_handler, make_settings, token, until, ws_url

pytestmark = pytest.mark.e2e

DEPTH = 32  # WS_MAX_JSON_DEPTH's default


def nested(levels: int) -> Any:
    """``levels`` arrays inside each other: ``[[...[]...]]``."""
    value: Any = []
    for _ in range(levels - 1):
        value = [value]
    return value


async def open_ws(base: str, user: str = "alice") -> ClientConnection:
    ws = await connect(ws_url(base), subprotocols=["bearer", token(user)])  # type: ignore[list-item]
    await next_of_type(ws, "hello")
    return ws


def errors_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_2kb_frame_nested_990_deep_gets_an_error_envelope_not_1011(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings()
    app, hub = build_app(settings)  # echo_handler reads with ws.receive_json()
    frame = '{"type":"echo","data":' + "[" * 990 + "]" * 990 + "}"
    assert 1900 < len(frame) < 2100
    async with serve(app, settings=settings) as base:
        ws = await open_ws(base)
        try:
            await ws.send(frame)
            error = await next_of_type(ws, "error")
            assert error["data"] == {
                "code": "json_too_deep",
                "message": f"JSON nested deeper than {DEPTH} levels",
            }
            # Still open, and the handler still answers.
            await ws.send(json.dumps({"type": "echo", "data": {"n": 1}}))
            assert (await next_of_type(ws, "echo"))["data"] == {"n": 1}
        finally:
            await ws.close()
        await until(lambda: hub.stats().connections == 0)
    refusals = [r for r in caplog.records if getattr(r, "event", None) == "invalid_frame"]
    assert refusals
    assert "json_too_deep" in refusals[0].getMessage()
    assert refusals[0].name.startswith("tempest_ws")
    assert errors_of(caplog) == []


async def test_a_frame_at_the_limit_reaches_receive_json_unchanged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings()
    app, _ = build_app(settings)
    # The envelope is level 1, so data may nest DEPTH - 1 levels.
    deepest = nested(DEPTH - 1)
    async with serve(app, settings=settings) as base:
        ws = await open_ws(base)
        try:
            await ws.send(json.dumps({"type": "echo", "data": deepest}))
            assert (await next_of_type(ws, "echo"))["data"] == deepest
            await ws.send(json.dumps({"type": "echo", "data": nested(DEPTH)}))
            assert (await next_of_type(ws, "error"))["data"]["code"] == "json_too_deep"
        finally:
            await ws.close()
    assert errors_of(caplog) == []


async def test_the_limit_is_a_setting() -> None:
    settings = make_settings(WS_MAX_JSON_DEPTH=4)
    app, _ = build_app(settings)
    async with serve(app, settings=settings) as base:
        ws = await open_ws(base)
        try:
            await ws.send(json.dumps({"type": "echo", "data": nested(3)}))
            assert (await next_of_type(ws, "echo"))["data"] == nested(3)
            await ws.send(json.dumps({"type": "echo", "data": {"a": {"b": {"c": 1}}}}))
            assert (await next_of_type(ws, "echo"))["data"] == {"a": {"b": {"c": 1}}}
            await ws.send(json.dumps({"type": "echo", "data": {"a": {"b": {"c": {}}}}}))
            error = await next_of_type(ws, "error")
            assert error["data"]["message"] == "JSON nested deeper than 4 levels"
        finally:
            await ws.close()


# -- outbound: an unencodable broadcast is the caller's error ----------------------------


def push_app() -> tuple[FastAPI, WebSocketHub]:
    """The echo router plus ``POST /push/{kind}``, which broadcasts bad data to everyone."""
    settings = make_settings()
    app, hub = build_app(settings)
    unencodable: dict[str, Any] = {
        "deep": nested(300),  # past orjson's 254-level limit
        "set": {1, 2},
        "object": object(),
        "int_key": {1: "x"},
    }

    @app.post("/push/{kind}")
    async def push(kind: str) -> JSONResponse:
        try:
            if kind == "send_to":
                await hub.send_to("alice", {"type": "bad", "data": unencodable["deep"]})
            else:
                await hub.broadcast({"type": "bad", "data": unencodable[kind]}, everyone=True)
        except TypeError as exc:  # UnencodableMessageError is a TypeError
            assert isinstance(exc, UnencodableMessageError)  # noqa: PT017
            return JSONResponse({"error": exc.code, "type": exc.message_type}, status_code=422)
        return JSONResponse({"ok": True})

    @app.post("/good")
    async def good() -> dict[str, bool]:
        await hub.broadcast({"type": "good", "data": {}}, everyone=True)
        return {"ok": True}

    return app, hub


@pytest.fixture
async def pushing() -> AsyncIterator[tuple[str, WebSocketHub]]:
    app, hub = push_app()
    async with serve(app, settings=make_settings()) as base:
        yield base, hub


@pytest.mark.parametrize("kind", ["deep", "set", "object", "int_key", "send_to"])
async def test_an_unencodable_broadcast_raises_to_the_caller_and_closes_nobody(
    pushing: tuple[str, WebSocketHub], kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    base, hub = pushing
    ws = await open_ws(base)
    try:
        async with httpx.AsyncClient(base_url=base) as http:
            refused = await http.post(f"/push/{kind}")
            assert refused.status_code == 422
            assert refused.json() == {"error": "unencodable", "type": "bad"}
            assert (await http.post("/good")).status_code == 200
        # The recipient got nothing partial and was not closed: the next message arrives.
        assert json.loads(await ws.recv()) == {"type": "good", "data": {}, "request_id": None}
        assert hub.stats().connections == 1
    finally:
        await ws.close()
    assert errors_of(caplog) == []


async def test_connection_send_of_unencodable_data_raises_to_the_handler() -> None:
    """The handler that tries to send it gets the exception; it may answer and go on."""
    outcomes: list[str] = []

    async def handler(ws: Any, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        while True:
            await ws.receive_json()
            try:
                await connection.send({"type": "bad", "data": nested(300)})
            except UnencodableMessageError as exc:
                outcomes.append(str(exc.code))
                await connection.send({"type": "refused", "data": {}})

    settings = make_settings()
    hub = WebSocketHub.from_settings(settings)
    app = FastAPI()
    app.include_router(
        make_websocket_router(
            handler, hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
        )
    )
    async with serve(app, settings=settings) as base:
        ws = await open_ws(base)
        try:
            await ws.send(json.dumps({"type": "go", "data": {}}))
            assert (await next_of_type(ws, "refused"))["data"] == {}
        finally:
            await ws.close()
    assert outcomes == ["unencodable"]


# -- malformed built-in operations -------------------------------------------------------


def allow_all(connection: WebSocketConnection, topic: str) -> bool:
    return True


@pytest.mark.parametrize(
    "envelope",
    [
        {"type": "subscribe", "data": {}},
        {"type": "subscribe", "data": []},
        {"type": "subscribe", "data": "room:1"},
        {"type": "subscribe", "data": {"topic": 5}},
        {"type": "subscribe", "data": {"topic": "x" * 10_000}},
        {"type": "unsubscribe", "data": None},
        {"type": "presence.get", "data": {}},
        {"type": "typing", "data": {"topic": {"nested": [1]}}},
        {"type": "receipt", "data": {"topic": "room:1"}},
    ],
    ids=lambda e: f"{e['type']}-{type(e['data']).__name__}",
)
async def test_malformed_builtin_data_gets_an_error_envelope_not_1011(
    envelope: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings()
    hub = WebSocketHub.from_settings(settings)
    app, _ = build_app(
        settings, handler=echo_handler, hub=hub, builtins=True, topic_authorizer=allow_all
    )
    async with serve(app, settings=settings) as base:
        ws = await open_ws(base)
        try:
            await ws.send(json.dumps({**envelope, "request_id": "r1"}))
            error = await next_of_type(ws, "error")
            assert error["request_id"] == "r1"
            assert error["data"]["code"] == "invalid_data"
            await ws.send(json.dumps({"type": "echo", "data": {"still": "open"}}))
            assert (await next_of_type(ws, "echo"))["data"] == {"still": "open"}
        finally:
            await ws.close()
    assert errors_of(caplog) == []
