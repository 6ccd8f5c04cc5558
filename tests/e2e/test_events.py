"""Event handlers (``@router.on``) over a real uvicorn socket and a real websockets client.

Validation with locations, typed replies and acks, ``Depends`` with a sub-dependency
and a ``yield`` dependency whose cleanup is observed, ``WebSocketError``, an exception
leaving the connection open, in-order delivery, the classic handler beside event
handlers, and the router-level ``dependencies=`` refusing the handshake.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from fastapi import Depends, FastAPI, WebSocket, WebSocketException
from pydantic import BaseModel, Field

from tempest_ws import (
    WebSocketConnection,
    WebSocketError,
    WebSocketHub,
    WSEnvelope,
    current_connection,
    current_user,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.exceptions import ConfigurationError
from tempest_ws.messages import MessageRegistry
from tempest_ws.settings import WebSocketSettings
from tempest_ws.testing import live_server
from tempest_ws.wire.codes import CloseCode
from tests.helpers.support import make_settings, token, until


class ChatSend(BaseModel):
    room: str
    text: str = Field(max_length=20)


class ChatSent(BaseModel):
    id: int
    room: str
    by: str


class Store:
    """What the handlers of one app share: a counter and a log of dependency events."""

    def __init__(self) -> None:
        self.next_id = 0
        self.log: list[str] = []


def get_store(websocket: WebSocket) -> Store:
    """A dependency asking for the ``WebSocket`` by type."""
    store = websocket.app.state.store
    assert isinstance(store, Store)
    return store


async def session(
    store: Annotated[Store, Depends(get_store)],
    user: Annotated[str, Depends(current_user)],
) -> AsyncIterator[str]:
    """A ``yield`` dependency with a sub-dependency; logs its open and its cleanup."""
    store.log.append(f"open {user}")
    try:
        yield f"session-of-{user}"
    finally:
        store.log.append(f"close {user}")


def build(
    settings: WebSocketSettings,
    *,
    classic: bool = False,
    dependencies: list[Any] | None = None,
) -> tuple[FastAPI, Store]:
    store = Store()
    hub = WebSocketHub.from_settings(settings)

    async def classic_handler(ws: WebSocket, connection: WebSocketConnection, hub: Any) -> None:
        while True:
            message = await ws.receive_json()
            await ws.send_json({"type": "classic", "data": message["type"]})

    router = make_websocket_router(
        classic_handler if classic else None,
        hub=hub,
        bearer_resolver=jwt_bearer_resolver(settings),
        settings=settings,
        dependencies=dependencies,
    )

    @router.on("chat.send")
    async def chat_send(
        message: ChatSend,
        connection: WebSocketConnection,
        hub: WebSocketHub,
        store: Annotated[Store, Depends(get_store)],
        session: Annotated[str, Depends(session)],
    ) -> ChatSent:
        assert session == f"session-of-{connection.user_key}"
        assert hub is not None
        store.next_id += 1
        store.log.append(f"handled {message.text}")
        return ChatSent(id=store.next_id, room=message.room, by=connection.user_key)

    @router.on("log.get")
    async def log_get(store: Annotated[Store, Depends(get_store)]) -> dict[str, Any]:
        return {"log": list(store.log)}

    @router.on("note")
    async def note(envelope: WSEnvelope, store: Annotated[Store, Depends(get_store)]) -> None:
        store.log.append(f"note {envelope.data.get('n')}")

    @router.on("refuse", errors=("not_allowed",))
    async def refuse() -> None:
        raise WebSocketError("not_allowed", "you may not", {"why": "test"})

    @router.on("explode")
    async def explode() -> None:
        raise RuntimeError("boom")

    @router.on("whoami")
    async def whoami(
        connection: Annotated[WebSocketConnection, Depends(current_connection)],
    ) -> dict[str, str]:
        return {"connection_id": connection.connection_id}

    app = FastAPI()
    app.state.store = store
    app.include_router(router)
    return app, store


async def test_typed_reply_with_depends_sub_dependency_and_yield_cleanup() -> None:
    settings = make_settings()
    app, _store = build(settings)
    async with live_server(app, settings=settings) as server, server.connect(token("ann")) as ann:
        await ann.send_envelope("chat.send", {"room": "lobby", "text": "hi"}, request_id="r1")
        reply = await ann.expect("chat.send.reply")
        assert reply == WSEnvelope(
            type="chat.send.reply", data={"id": 1, "room": "lobby", "by": "ann"}, request_id="r1"
        )
        # the yield dependency closed after that message, before the reply went out
        await ann.send_envelope("log.get", request_id="r2")
        log = await ann.expect("log.get.reply")
        assert log.data == {"log": ["open ann", "handled hi", "close ann"]}
        assert log.request_id == "r2"
        await ann.send_envelope("whoami", request_id="r3")
        assert (await ann.expect("whoami.reply")).data == {"connection_id": ann.connection_id}


async def test_invalid_data_answers_the_locations_and_never_reaches_the_handler() -> None:
    settings = make_settings()
    app, _store = build(settings)
    async with live_server(app, settings=settings) as server, server.connect(token("ann")) as ann:
        await ann.send_envelope("chat.send", {"text": "x" * 21}, request_id="bad")
        error = await ann.expect("error")
        assert error.request_id == "bad"
        assert error.data == {
            "code": "invalid_data",
            "message": "invalid data: data.room: missing, data.text: string_too_long",
        }
        await ann.send_envelope("log.get", request_id="r")
        assert (await ann.expect("log.get.reply")).data == {"log": []}


async def test_none_acks_a_request_id_and_sends_nothing_without_one() -> None:
    settings = make_settings()
    app, store = build(settings)
    async with live_server(app, settings=settings) as server, server.connect(token("ann")) as ann:
        await ann.send_envelope("note", {"n": 1})  # no request_id: no answer at all
        await ann.send_envelope("note", {"n": 2}, request_id="n2")
        ack = await ann.recv()
        assert WSEnvelope.model_validate_json(ack) == WSEnvelope(
            type="ack", data={}, request_id="n2"
        )
        assert store.log == ["note 1", "note 2"]


async def test_websocket_error_and_exception_answer_and_keep_the_connection_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings()
    app, _ = build(settings)
    async with live_server(app, settings=settings) as server, server.connect(token("ann")) as ann:
        await ann.send_envelope("refuse", request_id="e1")
        error = await ann.expect("error")
        assert error.request_id == "e1"
        assert error.data == {
            "code": "not_allowed",
            "message": "you may not",
            "details": {"why": "test"},
        }
        with caplog.at_level(logging.ERROR, logger="tempest_ws"):
            await ann.send_envelope("explode", request_id="e2")
            error = await ann.expect("error")
        assert (error.data["code"], error.request_id) == ("internal_error", "e2")
        assert "boom" not in error.data["message"]
        failed = [r for r in caplog.records if r.name == "tempest_ws.events"]
        assert failed
        assert ann.connection_id in failed[0].getMessage()
        # still open: the next message is handled
        await ann.send_envelope("chat.send", {"room": "r", "text": "after"}, request_id="ok")
        assert (await ann.expect("chat.send.reply")).request_id == "ok"


async def test_messages_of_one_connection_are_handled_in_order() -> None:
    settings = make_settings()
    app, _store = build(settings)
    async with live_server(app, settings=settings) as server, server.connect(token("ann")) as ann:
        for n in range(30):
            await ann.send_envelope("note", {"n": n})
        await ann.send_envelope("log.get", request_id="end")
        log = (await ann.expect("log.get.reply")).data["log"]
        assert log == [f"note {n}" for n in range(30)]


async def test_unknown_type_without_a_classic_handler_is_an_error() -> None:
    settings = make_settings()
    app, _ = build(settings)
    async with live_server(app, settings=settings) as server, server.connect(token("ann")) as ann:
        await ann.send_envelope("nobody.handles", {}, request_id="u")
        error = await ann.expect("error")
        assert (error.data["code"], error.request_id) == ("unknown_type", "u")


async def test_classic_handler_gets_the_types_without_an_event_handler() -> None:
    settings = make_settings()
    app, _ = build(settings, classic=True)
    async with live_server(app, settings=settings) as server, server.connect(token("ann")) as ann:
        await ann.send_envelope("something.else", {})
        assert (await ann.expect("classic")).data == "something.else"
        await ann.send_envelope("chat.send", {"room": "r", "text": "t"}, request_id="c")
        assert (await ann.expect("chat.send.reply")).data["by"] == "ann"
        await ann.send_envelope("another", {})
        assert (await ann.expect("classic")).data == "another"


async def test_router_dependencies_refuse_the_connection_before_any_event() -> None:
    def refuse_all() -> None:
        raise WebSocketException(code=CloseCode.POLICY_VIOLATION)

    settings = make_settings()
    app, store = build(settings, dependencies=[Depends(refuse_all)])
    async with live_server(app, settings=settings) as server:
        from websockets.asyncio.client import connect
        from websockets.exceptions import InvalidStatus

        with pytest.raises(InvalidStatus) as refused:
            async with connect(server.ws_url(), subprotocols=["bearer", token("ann")]):  # type: ignore[list-item]
                pass
        assert refused.value.response.status_code == 403
    assert store.log == []


async def test_concurrent_handlers_run_beside_each_other_up_to_the_limit() -> None:
    settings = make_settings(WS_MAX_CONCURRENT_HANDLERS=2)
    hub = WebSocketHub.from_settings(settings)
    router = make_websocket_router(
        hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
    )
    release = asyncio.Event()
    running: list[int] = []
    peak: list[int] = [0]

    @router.on("slow", concurrent=True)
    async def slow(envelope: WSEnvelope) -> dict[str, int]:
        running.append(1)
        peak[0] = max(peak[0], len(running))
        try:
            await release.wait()
        finally:
            running.pop()
        return {"n": envelope.data["n"]}

    app = FastAPI()
    app.include_router(router)
    async with live_server(app, settings=settings) as server, server.connect(token("ann")) as ann:
        for n in range(5):
            await ann.send_envelope("slow", {"n": n}, request_id=f"s{n}")
        await until(lambda: len(running) == 2)
        release.set()  # the other three were waiting for a free slot
        answered = {(await ann.expect("slow.reply")).request_id for _ in range(5)}
        assert answered == {f"s{n}" for n in range(5)}
    assert peak[0] == 2


def test_handlers_that_cannot_be_filled_are_refused_at_registration() -> None:
    settings = make_settings()
    router = make_websocket_router(
        hub=WebSocketHub.from_settings(settings),
        bearer_resolver=jwt_bearer_resolver(settings),
        settings=settings,
        builtins=["typing"],
    )

    async def takes_int(count: int) -> None: ...

    async def two_models(a: ChatSend, b: ChatSent) -> None: ...

    def not_async(message: ChatSend) -> None: ...

    with pytest.raises(ConfigurationError, match="count"):
        router.on("a")(takes_int)
    with pytest.raises(ConfigurationError, match="only one"):
        router.on("b")(two_models)
    with pytest.raises(ConfigurationError, match="async def"):
        router.on("c")(not_async)  # type: ignore[type-var]
    for taken in ("typing", "ping", "x.reply"):
        with pytest.raises(ConfigurationError):
            router.on(taken)(two_models)

    async def fine(message: ChatSend) -> None: ...

    router.on("d")(fine)
    with pytest.raises(ConfigurationError, match="already has a handler"):
        router.on("d")(fine)


async def test_a_returned_envelope_is_sent_with_the_request_id_and_overrides_apply() -> None:
    settings = make_settings()
    app, _ = build(settings)
    replacement = Store()
    replacement.log.append("from the override")
    app.dependency_overrides[get_store] = lambda: replacement
    hub = WebSocketHub.from_settings(settings)
    own = make_websocket_router(
        hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings, path="/own"
    )

    @own.on("own")
    async def own_reply(envelope: WSEnvelope) -> WSEnvelope:
        return WSEnvelope(type="ack", data={"custom": envelope.data})

    app.include_router(own)
    async with live_server(app, settings=settings) as server:
        async with server.connect(token("ann"), path="/own") as ann:
            await ann.send_envelope("own", {"x": 1}, request_id="o1")
            assert await ann.expect("ack") == WSEnvelope(
                type="ack", data={"custom": {"x": 1}}, request_id="o1"
            )
        async with server.connect(token("ann")) as ann:
            await ann.send_envelope("log.get", request_id="g")
            assert (await ann.expect("log.get.reply")).data == {"log": ["from the override"]}


def test_a_classic_router_gets_no_dispatch_until_its_first_event_handler() -> None:
    settings = make_settings()

    async def classic(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        await ws.receive_json()

    messages = MessageRegistry()
    messages.inbound("typed")(ChatSend)
    router = make_websocket_router(
        classic,
        hub=WebSocketHub.from_settings(settings),
        bearer_resolver=jwt_bearer_resolver(settings),
        settings=settings,
        messages=messages,
    )
    endpoint = router._tempest_endpoint

    def events() -> object:
        return None if endpoint.inbound is None else endpoint.inbound.events

    assert endpoint.handler is classic  # nothing added to the read loop or the handler
    assert events() is None
    with pytest.raises(ConfigurationError, match="messages registry"):
        router.on("typed")(chat_like)
    router.on("events.first")(chat_like)
    assert endpoint.handler is not classic
    assert events() is not None
    assert [h.message_type for h in router.event_handlers] == ["events.first"]


async def chat_like(message: ChatSend) -> None:
    """A handler used only to register."""
