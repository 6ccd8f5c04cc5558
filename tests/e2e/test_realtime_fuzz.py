"""Hypothesis against a live server with every realtime option on: built-ins, a message
registry, a topic authorizer and topic presence.

Each example is a real connection (user ``mallory``) sending generated frames: random
JSON, built-in envelopes with wrong types and values, JSON nested up to and far past
``WS_MAX_JSON_DEPTH`` in every part of an envelope. The server runs
in the test's event loop; hypothesis runs in a worker thread and hands it each example.
Properties:

- no session ever ends with 1011, every close code is one for a misbehaving client, and
  the server keeps serving (each session's last request is answered; a fresh client
  still gets ``hello``; no ASGI exception, no handler or announcement failure logged);
- observers get realtime events only for their own topic: ``alice`` (``room:a``) and
  ``bob`` (``room:b``) only events whose ``data.topic`` is theirs, ``carol`` (no topic)
  none at all, and nobody gets ``inbox:alice`` traffic but alice;
- the registry returns to its baseline after each session.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from fastapi import WebSocket
from hypothesis import strategies as st
from pydantic import BaseModel, Field
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tempest_ws import CloseCode, MessageRegistry, WebSocketConnection, WebSocketHub
from tempest_ws.realtime import receive_envelope
from tempest_ws.testing import serve
from tests.helpers.hardening import capture_all_logs, fuzz_in_thread
from tests.helpers.realtime_support import (
    Tab,
    open_tab,
    realtime_app,
    rooms_and_own_inbox,
    ws_endpoint,
)
from tests.helpers.support import make_settings, token, until

pytestmark = pytest.mark.e2e

ALLOWED_CLOSES = {
    None,
    CloseCode.NORMAL,
    CloseCode.POLICY_VIOLATION,
    CloseCode.MESSAGE_TOO_BIG,
    CloseCode.RATE_LIMITED,
}
EVENTS = {"presence.join", "presence.leave", "typing", "receipt", "chat.message"}
OBSERVERS = {"alice": "room:a", "bob": "room:b", "carol": None}

registry = MessageRegistry()


@registry.inbound("chat.send")
class ChatSend(BaseModel):
    topic: str = Field(min_length=1, max_length=64)
    text: str = Field(max_length=200)


async def chat_handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """Relays ``chat.send`` to a topic the sender is in; replies with the request_id."""
    while True:
        incoming = await receive_envelope(ws)
        message = incoming.message
        assert isinstance(message, ChatSend)
        if message.topic not in connection.topics:
            await hub.reply_error(connection.connection_id, incoming.envelope, "no", "join")
            continue
        line = {"topic": message.topic, "text": message.text}
        await hub.broadcast({"type": "chat.message", "data": line}, topic=message.topic)
        await hub.reply(connection.connection_id, incoming.envelope)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**80), 2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
topics = st.sampled_from(["room:a", "room:b", "room:c", "inbox:alice", "inbox:mallory"]) | (
    st.text(max_size=300) | json_values
)
builtin_types = st.sampled_from(
    ["subscribe", "unsubscribe", "presence.get", "typing", "receipt", "chat.send"]
)
shaped_data = st.fixed_dictionaries(
    {},
    optional={
        "topic": topics,
        "typing": st.booleans() | json_values,
        "message_id": st.text(max_size=140) | st.integers(-(2**64), 2**64) | json_values,
        "status": st.sampled_from(["read", "delivered", "READ", ""]) | st.text(max_size=40),
        "text": st.text(max_size=250) | json_values,
    },
)
envelopes = st.fixed_dictionaries(
    {"type": builtin_types | st.text(max_size=130) | json_values},
    optional={
        "data": shaped_data | json_values,
        "request_id": st.none() | st.text(max_size=140) | st.integers(),
    },
)


def _nested(kind: str, depth: int, opener: str) -> str:
    closer = {"[": "]", '{"k":': "}"}[opener]
    return f'{{"type":"{kind}","data":{{"topic":' + opener * depth + "1" + closer * depth + "}}"


deep = st.builds(_nested, builtin_types, st.integers(1, 3000), st.sampled_from(["[", '{"k":']))

LAYERS = {"[": "]", "[0,": "]", '{"k":': "}", '{"a":[],"b":': "}"}


@st.composite
def deeply_nested(draw: st.DrawFn) -> str:
    """A frame with a value nested around ``WS_MAX_JSON_DEPTH`` (32) or far past it.

    The layers mix arrays and objects in a drawn repeating pattern, and the nested value
    sits anywhere: as the whole frame, as ``data``, in a built-in's ``topic``, in the
    ``text`` of a ``chat.send`` that would reach the handler, in ``request_id`` or
    ``type``.
    """
    depth = draw(st.integers(24, 40) | st.integers(1, 4000))
    pattern = draw(st.lists(st.sampled_from(sorted(LAYERS)), min_size=1, max_size=4))
    layers = [pattern[i % len(pattern)] for i in range(depth)]
    leaf = draw(st.sampled_from(["1", '"x"', "null", "[]", "{}"]))
    value = "".join(layers) + leaf + "".join(LAYERS[layer] for layer in reversed(layers))
    kind = json.dumps(draw(builtin_types | st.sampled_from(["chat.send", "no.such.type"])))
    return draw(
        st.sampled_from(
            [
                value,
                f'{{"type":{kind},"data":{value}}}',
                f'{{"type":{kind},"data":{{"topic":{value}}}}}',
                f'{{"type":"chat.send","data":{{"topic":"room:a","text":{value}}}}}',
                f'{{"type":{kind},"data":{{}},"request_id":{value}}}',
                f'{{"type":{value}}}',
            ]
        )
    )


known_topics = st.sampled_from(["room:a", "room:b", "room:c", "inbox:alice", "inbox:mallory"])
operations = st.one_of(
    st.builds(lambda t: {"type": "subscribe", "data": {"topic": t}}, known_topics),
    st.builds(lambda t: {"type": "unsubscribe", "data": {"topic": t}}, known_topics),
    st.builds(
        lambda t, b: {"type": "typing", "data": {"topic": t, "typing": b}},
        known_topics,
        st.booleans(),
    ),
    st.builds(
        lambda t, m: {"type": "receipt", "data": {"topic": t, "message_id": m, "status": "read"}},
        known_topics,
        st.text(min_size=1, max_size=10) | st.integers(0, 1000),
    ),
    st.builds(
        lambda t, x: {"type": "chat.send", "data": {"topic": t, "text": x}},
        known_topics,
        st.text(max_size=20),
    ),
).map(json.dumps)
frames = st.one_of(
    operations,
    operations,
    envelopes.map(json.dumps),
    envelopes.map(json.dumps),
    deep,
    deeply_nested(),
    json_values.map(json.dumps),
    st.text(max_size=100),
)


def _misdelivered(user: str, topic: str | None, seen: list[dict[str, Any]]) -> list[Any]:
    wrong = []
    for envelope in seen:
        if envelope["type"] == "secret" and user != "alice":
            wrong.append(envelope)
        if envelope["type"] in EVENTS and (topic is None or envelope["data"]["topic"] != topic):
            wrong.append(envelope)
    return wrong


def _session(base: str, hub: WebSocketHub) -> Callable[[list[str]], Coroutine[Any, Any, Any]]:
    async def session(sent: list[str]) -> int | None:
        protocols: list[Any] = ["bearer", token("mallory")]
        code: int | None = None
        async with connect(ws_endpoint(base), subprotocols=protocols, proxy=None) as ws:
            tab = Tab(ws, "mallory")
            try:
                await tab.wait(lambda: bool(tab.of("hello")))
                for frame in sent:
                    await ws.send(frame)
                end = {"type": "presence.get", "data": {"topic": "room:zz"}, "request_id": "end"}
                await ws.send(json.dumps(end))
                await tab.wait(lambda: tab.answer("end") is not None or tab.close_code is not None)
            except ConnectionClosed:
                pass
            await ws.close()
            await tab.closed()
            if tab.answer("end") is None:
                code = tab.close_code
        await until(lambda: not hub.connections_of("mallory"))
        await hub.broadcast({"type": "secret", "data": "x"}, topic="inbox:alice")
        return code

    return session


async def test_fuzzed_realtime_envelopes_never_crash_never_1011_never_misdeliver() -> None:
    ws_settings = make_settings()
    hub = WebSocketHub(topic_authorizer=rooms_and_own_inbox, presence=True)
    app = realtime_app(ws_settings, hub, handler=chat_handler, builtins=True, messages=registry)
    async with serve(app, settings=ws_settings) as base:
        with capture_all_logs("uvicorn", "tempest_ws", level=20) as logs:
            async with (
                open_tab(base, "alice", topics="room:a,inbox:alice") as alice,
                open_tab(base, "bob", topics="room:b") as bob,
                open_tab(base, "carol") as carol,
            ):
                await alice.wait(lambda: len(alice.of("ack")) == 2)
                await bob.wait(lambda: len(bob.of("ack")) == 1)
                baseline = hub.stats()
                loop = asyncio.get_running_loop()
                codes = await fuzz_in_thread(
                    loop, _session(base, hub), st.lists(frames, max_size=20), 120, ALLOWED_CLOSES
                )
                assert len(codes) >= 120
                assert hub.stats().connections == baseline.connections
                assert hub.stats().subscriptions == baseline.subscriptions

                await hub.broadcast({"type": "marker", "data": "end"}, everyone=True)
                observers = {"alice": alice, "bob": bob, "carol": carol}
                for user, tab in observers.items():
                    await tab.wait(lambda tab=tab: "end" in tab.of("marker"))  # type: ignore[misc]
                    assert _misdelivered(user, OBSERVERS[user], tab.frames) == []
                    assert tab.close_code is None
                relayed = sum(1 for f in alice.frames if f["type"] in EVENTS)
                assert relayed > 0, "nothing generated reached an observer: the check is vacuous"
                async with open_tab(base, "fresh") as fresh:
                    assert fresh.of("hello")
    assert "Exception in ASGI application" not in logs.text
    assert "handler failed" not in logs.text
    assert "announcement failed" not in logs.text
