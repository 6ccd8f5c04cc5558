"""Event handlers' exit stacks over a real uvicorn socket: a message whose dependencies
cannot ``yield`` gets none of its own, and that never loses a cleanup: an override that
``yield``s is cleaned up after its message, in order and concurrent handlers alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI, WebSocket

from tempest_ws import WebSocketHub, jwt_bearer_resolver, make_websocket_router
from tempest_ws.testing import live_server
from tests.helpers.support import make_settings, token


def get_label() -> str:
    """A plain dependency: no stack of its own for the messages using it."""
    return "plain"


def stack_of(websocket: WebSocket) -> int:
    """Which exit stack the connection's scope names now."""
    return id(websocket.scope["fastapi_inner_astack"])


async def opened(log: Annotated[list[str], Depends(lambda: [])]) -> AsyncIterator[str]:
    yield "opened"


def build() -> tuple[FastAPI, list[str]]:
    settings = make_settings()
    log: list[str] = []
    app = FastAPI()
    router = make_websocket_router(
        hub=WebSocketHub.from_settings(settings),
        bearer_resolver=jwt_bearer_resolver(settings),
        settings=settings,
    )

    @router.on("label.get")
    async def label_get(label: Annotated[str, Depends(get_label)]) -> dict[str, object]:
        return {"label": label, "log": list(log)}

    @router.on("label.many", concurrent=True)
    async def label_many(label: Annotated[str, Depends(get_label)]) -> dict[str, object]:
        return {"label": label, "log": list(log)}

    @router.on("stack.id")
    async def stack_id(stack: Annotated[int, Depends(stack_of)]) -> dict[str, int]:
        return {"stack": stack}

    @router.on("yielding")
    async def yielding(value: Annotated[str, Depends(opened)]) -> dict[str, str]:
        return {"value": value}

    app.include_router(router)
    return app, log


async def test_plain_dependencies_are_solved_per_message_in_order_and_concurrent() -> None:
    app, _ = build()
    async with (
        live_server(app, settings=make_settings()) as server,
        server.connect(token("ann")) as ann,
    ):
        for n in range(3):
            kind = "label.get" if n % 2 else "label.many"
            await ann.send_envelope(kind, request_id=str(n))
            reply = await ann.expect(f"{kind}.reply")
            assert (reply.data, reply.request_id) == ({"label": "plain", "log": []}, str(n))


async def test_an_override_that_yields_is_cleaned_up_after_each_message() -> None:
    app, log = build()

    async def overriding() -> AsyncIterator[str]:
        log.append("open")
        try:
            yield "override"
        finally:
            log.append("close")

    app.dependency_overrides[get_label] = overriding
    async with (
        live_server(app, settings=make_settings()) as server,
        server.connect(token("ann")) as ann,
    ):
        await ann.send_envelope("label.get", request_id="a")
        first = await ann.expect("label.get.reply")
        assert first.data == {"label": "override", "log": ["open"]}
        await ann.send_envelope("label.many", request_id="b")
        second = await ann.expect("label.many.reply")
        assert second.data == {"label": "override", "log": ["open", "close", "open"]}
        await ann.send_envelope("label.get", request_id="c")
        third = await ann.expect("label.get.reply")
        assert third.data["log"] == ["open", "close", "open", "close", "open"]


async def test_after_a_yield_message_the_scope_names_the_idle_stack_again() -> None:
    app, _ = build()
    async with (
        live_server(app, settings=make_settings()) as server,
        server.connect(token("ann")) as ann,
    ):
        await ann.send_envelope("stack.id", request_id="1")
        before = (await ann.expect("stack.id.reply")).data["stack"]
        await ann.send_envelope("yielding", request_id="2")
        assert (await ann.expect("yielding.reply")).data == {"value": "opened"}
        await ann.send_envelope("stack.id", request_id="3")
        assert (await ann.expect("stack.id.reply")).data["stack"] == before
