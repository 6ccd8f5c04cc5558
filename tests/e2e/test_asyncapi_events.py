"""Event handlers in the AsyncAPI document: request schema, reply schema, errors.

The document is served by the route next to a real uvicorn endpoint, and validated
against the official 3.0.0 schema (the helpers of ``test_asyncapi``).
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel, Field

from tempest_ws import WebSocketHub, make_websocket_router
from tempest_ws.asyncapi import add_asyncapi_route
from tempest_ws.testing import FakeTokens, live_server
from tests.e2e.test_asyncapi import assert_consistent, resolve, validation_errors
from tests.helpers.support import make_settings


class ChatSend(BaseModel):
    room: str
    text: str = Field(max_length=2000)


class ChatSent(BaseModel):
    id: int


def build() -> FastAPI:
    settings = make_settings()
    router = make_websocket_router(
        hub=WebSocketHub.from_settings(settings),
        bearer_resolver=FakeTokens().resolver,
        settings=settings,
    )

    @router.on("chat.send", errors=("not_member",))
    async def chat_send(message: ChatSend) -> ChatSent:
        """Post a message to a room."""
        return ChatSent(id=1)

    @router.on("typing.stop")
    async def typing_stop() -> None: ...

    add_asyncapi_route(router, settings=settings)

    @router.on("stats.get")  # after the route was added: still listed
    async def stats_get() -> dict[str, int]:
        return {}

    app = FastAPI()
    app.include_router(router)
    return app


def follow(document: dict[str, Any], ref: str) -> dict[str, Any]:
    node = resolve(document, ref)
    while "$ref" in node:
        node = resolve(document, node["$ref"])
    return dict(node)


def receive_operation(document: dict[str, Any], message_type: str) -> dict[str, Any]:
    for operation in document["operations"].values():
        messages = [follow(document, m["$ref"]) for m in operation["messages"]]
        if operation["action"] == "receive" and messages[0]["name"] == message_type:
            return dict(operation)
    raise AssertionError(f"no receive operation for {message_type}")


def reply_names(document: dict[str, Any], operation: dict[str, Any]) -> list[str]:
    return [follow(document, m["$ref"])["name"] for m in operation["reply"]["messages"]]


async def test_every_event_handler_is_listed_with_its_schemas_and_errors() -> None:
    app = build()
    async with live_server(app) as server, httpx.AsyncClient(base_url=server.base_url) as http:
        document = (await http.get("/ws/asyncapi.json")).json()
    assert validation_errors(document) == []
    assert_consistent(document)

    send = receive_operation(document, "chat.send")
    assert send["summary"] == "Post a message to a room."
    assert reply_names(document, send) == ["chat.send.reply", "error"]
    assert send["x-tempest-ws-errors"] == ["invalid_data", "internal_error", "not_member"]
    request = follow(document, send["messages"][0]["$ref"])
    data = follow(document, request["payload"]["properties"]["data"]["$ref"])
    assert data["required"] == ["room", "text"]
    assert data["properties"]["text"]["maxLength"] == 2000
    [reply_ref] = [m for m in send["reply"]["messages"] if "chat.send.reply" in m["$ref"]]
    reply = follow(document, reply_ref["$ref"])
    reply_data = follow(document, reply["payload"]["properties"]["data"]["$ref"])
    assert reply_data["properties"]["id"]["type"] == "integer"

    typing_stop = receive_operation(document, "typing.stop")
    assert reply_names(document, typing_stop) == ["ack", "error"]
    assert typing_stop["x-tempest-ws-errors"] == ["internal_error"]
    stats = receive_operation(document, "stats.get")
    assert reply_names(document, stats) == ["stats.get.reply", "error"]
