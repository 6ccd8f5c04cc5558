"""``WebSocketClient.request()`` with pydantic models, against the real router under uvicorn.

The server is a classic handler answering the way the router answers a typed request:
``<type>.reply`` with the handler's result, ``ack`` with ``{}`` when there is none,
``error`` with ``{"code", "message", ...}`` on failure, each carrying the request's
``request_id`` (``hub.reply()``). The client correlates by ``request_id`` only. Waits are
bounded; nothing sleeps to let something happen.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tempest_ws import (
    WebSocketConnection,
    WebSocketHub,
    WSEnvelope,
    jwt_bearer_resolver,
    make_websocket_router,
)
from tempest_ws.client import Backoff, RequestError, WebSocketClient
from tempest_ws.realtime import receive_envelope
from tempest_ws.testing import serve
from tests.helpers.support import make_settings, token, ws_url

BOUND = 30.0
"""Upper bound of any single wait; reached only when something is broken."""
FAST = Backoff(min_delay=0.02, max_delay=0.2, factor=2.0)

pytestmark = pytest.mark.e2e


class ChatSend(BaseModel):
    """A request model with an alias: sent as ``roomId``."""

    model_config = ConfigDict(populate_by_name=True)

    room_id: str = Field(alias="roomId")
    text: str = Field(max_length=20)


class ChatSent(BaseModel):
    id: int
    room_id: str = Field(alias="roomId")


class Nothing(BaseModel):
    """A model whose fields all have defaults: what an ``ack`` validates into."""

    note: str = "none"


class Needs(BaseModel):
    required: int


def make_app(received: list[WSEnvelope]) -> tuple[FastAPI, WebSocketHub]:
    settings = make_settings()
    hub = WebSocketHub.from_settings(settings)

    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        sent = 0
        while True:
            envelope = (await receive_envelope(ws)).envelope
            received.append(envelope)
            cid = connection.connection_id
            if envelope.type == "chat.send":
                try:
                    post = ChatSend.model_validate(envelope.data)
                except ValidationError as exc:
                    errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
                    problem = {"code": "invalid_data", "message": "bad chat", "errors": errors}
                    await hub.reply(cid, envelope, problem, message_type="error")
                    continue
                sent += 1
                reply = ChatSent(id=sent, roomId=post.room_id)
                await hub.reply(cid, envelope, reply, message_type="chat.send.reply")
            elif envelope.type == "note":
                await hub.reply(cid, envelope)  # the handler returned nothing: ack {}
            elif envelope.type == "wrong":
                await hub.reply(cid, envelope, {"id": "not a number"}, message_type="wrong.reply")
            elif envelope.type == "fail":
                await hub.reply_error(cid, envelope, "internal_error", "it broke")

    app = FastAPI()
    app.include_router(
        make_websocket_router(
            handler, hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
        )
    )
    return app, hub


@pytest.fixture
async def served() -> AsyncIterator[tuple[WebSocketClient, list[WSEnvelope]]]:
    received: list[WSEnvelope] = []
    app, _ = make_app(received)
    async with serve(app) as base:
        client = WebSocketClient(
            ws_url(base),
            token=token("alice"),
            backoff=FAST,
            rng=random.Random(3),
            open_timeout=BOUND,
        )
        async with client:
            yield client, received


async def test_a_model_goes_out_by_alias_and_the_reply_comes_back_as_the_model(
    served: tuple[WebSocketClient, list[WSEnvelope]],
) -> None:
    client, received = served
    sent = await client.request(
        "chat.send", ChatSend(room_id="lobby", text="hi"), response_model=ChatSent, timeout=BOUND
    )
    assert isinstance(sent, ChatSent)
    assert (sent.id, sent.room_id) == (1, "lobby")
    request = next(e for e in received if e.type == "chat.send")
    assert request.data == {"roomId": "lobby", "text": "hi"}
    again = await client.request(
        "chat.send", {"roomId": "hall", "text": "yo"}, response_model=ChatSent, timeout=BOUND
    )
    assert (again.id, again.room_id) == (2, "hall")


async def test_an_error_reply_raises_request_error_with_the_servers_details(
    served: tuple[WebSocketClient, list[WSEnvelope]],
) -> None:
    client, received = served
    with pytest.raises(RequestError) as caught:
        await client.request(
            "chat.send",
            {"roomId": "lobby", "text": "x" * 50},
            response_model=ChatSent,
            timeout=BOUND,
        )
    error = caught.value
    request = next(e for e in received if e.type == "chat.send")
    assert error.code == "invalid_data"
    assert error.reason == "bad chat"
    assert error.request_id == request.request_id
    assert error.request_id is not None
    assert [problem["loc"] for problem in error.data["errors"]] == [["text"]]
    assert error.envelope is not None
    assert error.envelope.type == "error"
    with pytest.raises(RequestError) as failed:
        await client.request("fail", response_model=ChatSent, timeout=BOUND)
    assert (failed.value.code, failed.value.reason) == ("internal_error", "it broke")


async def test_an_ack_validates_as_an_empty_object(
    served: tuple[WebSocketClient, list[WSEnvelope]],
) -> None:
    client, _ = served
    nothing = await client.request("note", response_model=Nothing, timeout=BOUND)
    assert nothing == Nothing()
    with pytest.raises(RequestError) as caught:
        await client.request("note", response_model=Needs, timeout=BOUND)
    assert caught.value.code == "invalid_answer"
    assert isinstance(caught.value.__cause__, ValidationError)
    assert "Needs" in caught.value.reason
    assert "required" in caught.value.reason


async def test_a_reply_that_does_not_validate_raises_invalid_answer(
    served: tuple[WebSocketClient, list[WSEnvelope]],
) -> None:
    client, received = served
    with pytest.raises(RequestError) as caught:
        await client.request("wrong", response_model=ChatSent, timeout=BOUND)
    error = caught.value
    assert error.code == "invalid_answer"
    assert isinstance(error.__cause__, ValidationError)
    assert error.envelope is not None
    assert error.envelope.type == "wrong.reply"
    assert error.request_id == next(e for e in received if e.type == "wrong").request_id
    assert error.data == {"id": "not a number"}
    assert "ChatSent" in error.reason
    # The client keeps working: the next request is answered.
    assert (await client.request("note", response_model=Nothing, timeout=BOUND)) == Nothing()


async def test_without_a_response_model_the_reply_envelope_is_returned_whatever_its_type(
    served: tuple[WebSocketClient, list[WSEnvelope]],
) -> None:
    client, _ = served
    error = await client.request("chat.send", {"roomId": 1}, timeout=BOUND)
    assert error.type == "error"
    assert error.data["code"] == "invalid_data"
    ack = await client.request("note", timeout=BOUND)
    assert (ack.type, ack.data) == ("ack", {})
    reply: Any = await client.request(
        "chat.send", ChatSend(room_id="lobby", text="hi"), timeout=BOUND
    )
    assert isinstance(reply, WSEnvelope)
    assert (reply.type, reply.data) == ("chat.send.reply", {"id": 1, "roomId": "lobby"})


async def test_send_dumps_a_model_by_alias(
    served: tuple[WebSocketClient, list[WSEnvelope]],
) -> None:
    client, received = served
    await client.send("chat.send", ChatSend(room_id="lobby", text="hi"))
    # Frames of one connection arrive in order: once the ack of the next request is
    # back, the send before it was received.
    await client.request("note", timeout=BOUND)
    sends = [e for e in received if e.type == "chat.send"]
    assert [(e.data, e.request_id) for e in sends] == [({"roomId": "lobby", "text": "hi"}, None)]
