"""The snippets of docs/events.md (``docs_src/events_*.py``) over a real uvicorn socket.

Each test runs one step of the page as it describes it, with a ``websockets`` client.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from websockets.asyncio.client import ClientConnection, connect

import docs_src.events_classic as events_classic
import docs_src.events_concurrent as events_concurrent
import docs_src.events_depends as events_depends
import docs_src.events_errors as events_errors
import docs_src.events_first as events_first
from tempest_ws import WSEnvelope
from tempest_ws.testing import expect_envelope, serve
from tests.helpers.support import make_settings, token, until, ws_url


@asynccontextmanager
async def tab(base: str, user: str) -> AsyncIterator[ClientConnection]:
    async with connect(
        ws_url(base),
        subprotocols=["bearer", token(user)],  # type: ignore[list-item]
        proxy=None,
    ) as ws:
        await expect_envelope(ws, "hello")
        yield ws


async def send(ws: ClientConnection, kind: str, data: object, request_id: str | None) -> None:
    await ws.send(json.dumps({"type": kind, "data": data, "request_id": request_id}))


async def test_first_steps_validate_and_reply() -> None:
    app = events_first.create_app(make_settings())
    async with serve(app) as base, tab(base, "ann") as ws:
        await send(ws, "chat.send", {"room": "lobby", "text": "hi"}, "r1")
        assert await expect_envelope(ws, "chat.send.reply") == WSEnvelope(
            type="chat.send.reply",
            data={"room": "lobby", "sender": "ann", "text": "hi"},
            request_id="r1",
        )
        await send(ws, "chat.send", {"room": "lobby", "text": "x" * 2001}, "r2")
        assert await expect_envelope(ws, "error") == WSEnvelope(
            type="error",
            data={"code": "invalid_data", "message": "invalid data: data.text: string_too_long"},
            request_id="r2",
        )


async def test_errors_websocket_error_ack_and_internal_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = events_errors.create_app(make_settings(), rooms={"lobby": {"ann"}})
    async with serve(app) as base, tab(base, "bob") as bob, tab(base, "ann") as ann:
        await send(bob, "room.join", {"room": "lobby"}, "j1")
        assert await expect_envelope(bob, "error") == WSEnvelope(
            type="error",
            data={"code": "not_member", "message": "you are not a member of this room"},
            request_id="j1",
        )
        await send(ann, "room.join", {"room": "lobby"}, "j2")
        assert await expect_envelope(ann, "ack") == WSEnvelope(type="ack", request_id="j2")
        await send(ann, "room.leave", {"room": "lobby"}, None)  # nothing comes back
        with caplog.at_level(logging.ERROR, logger="tempest_ws.events"):
            await send(ann, "room.crash", {}, "c1")
            error = await expect_envelope(ann, "error")
        assert (error.data["code"], error.request_id) == ("internal_error", "c1")
        assert any("room.crash" in r.getMessage() for r in caplog.records)
        await send(ann, "room.leave", {"room": "lobby"}, "l1")
        assert (await expect_envelope(ann, "ack")).request_id == "l1"


async def test_dependencies_are_solved_per_message_and_cleaned_up() -> None:
    app = events_depends.create_app(make_settings())
    database = app.state.database
    async with serve(app) as base, tab(base, "ann") as ws:
        for n in (1, 2):
            await send(ws, "note.add", {"text": f"note {n}"}, f"n{n}")
            reply = await expect_envelope(ws, "note.add.reply")
            assert (reply.data, reply.request_id) == ({"count": n}, f"n{n}")
            assert (database.opened, database.closed) == (n, n)
    assert database.notes == [("ann", "note 1"), ("ann", "note 2")]


async def test_classic_handler_beside_event_handlers_and_lifecycle_decorators() -> None:
    seen: list[str] = []
    app = events_classic.create_app(make_settings(), seen=seen)
    async with serve(app) as base:
        async with tab(base, "ann") as ws:
            await send(ws, "app.ping", {"n": 1}, "p")
            assert (await expect_envelope(ws, "app.ping.reply")).data == {"n": 2}
            await send(ws, "anything.else", {}, None)
            assert (await expect_envelope(ws, "echo")).data == "anything.else"
        await until(lambda: "disconnect ann" in seen)
    assert seen == ["connect ann", "disconnect ann"]


async def test_a_concurrent_handler_does_not_hold_the_line() -> None:
    ready = asyncio.Event()
    app = events_concurrent.create_app(make_settings(), ready=ready)
    async with serve(app) as base, tab(base, "ann") as ws:
        await send(ws, "lookup", {"key": "a"}, "l")
        await send(ws, "echo", {"key": "b"}, "e")
        # the echo is answered while the lookup still waits
        assert (await expect_envelope(ws, "echo.reply")).data == {"key": "b"}
        ready.set()
        assert (await expect_envelope(ws, "lookup.reply")).data == {"key": "a", "value": "A"}
