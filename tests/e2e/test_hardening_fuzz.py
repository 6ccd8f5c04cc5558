"""Hypothesis against a live server: generated envelopes and raw frames over a socket.

The server runs in the test's event loop; hypothesis runs in a worker thread and hands
each example to that loop, so every example is a real connection to a real uvicorn.
Properties, for every example:

- the server never closes 1011 and never stops serving (a fresh client still gets
  ``hello``; no "Exception in ASGI application", no handler failure is logged);
- every close code is one the docs list for a misbehaving client;
- the registry returns to its baseline after each session;
- three observers (alice on ``room-a``, bob on ``room-b``, carol on nothing) receive
  topic messages only for their topic and direct messages only for themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import Callable, Coroutine
from typing import Any

import pytest
from fastapi import WebSocket
from hypothesis import strategies as st
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tempest_ws import CloseCode, WebSocketConnection, WebSocketHub
from tempest_ws.testing import serve
from tests.helpers.hardening import (
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    RawClient,
    build_router_app,
    capture_all_logs,
    close_payload,
    encode_frame,
    fuzz_in_thread,
    next_of_type,
)
from tests.helpers.support import make_settings, token, until, ws_url

pytestmark = pytest.mark.e2e

MAX_TOPIC = 256
OBSERVERS = {"alice": "room-a", "bob": "room-b", "carol": None}

ALLOWED_CLOSES = {
    None,  # the session ended by our own close
    CloseCode.NORMAL,
    CloseCode.PROTOCOL_ERROR,
    CloseCode.INVALID_PAYLOAD,
    CloseCode.POLICY_VIOLATION,
    CloseCode.MESSAGE_TOO_BIG,
    CloseCode.UNAUTHORIZED,
    CloseCode.RATE_LIMITED,
}


async def fuzz_handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """A careful application: validates what it reads, so a 1011 can only be the SDK's."""
    while True:
        message = await ws.receive_json()
        kind = message.get("type")
        data = message.get("data")
        fields: dict[str, Any] = data if isinstance(data, dict) else {}
        topic, user = fields.get("topic"), fields.get("user")
        valid_topic = isinstance(topic, str) and 0 < len(topic) <= MAX_TOPIC
        if kind == "subscribe" and valid_topic:
            await hub.subscribe(connection.connection_id, topic)
        elif kind == "unsubscribe" and valid_topic:
            await hub.unsubscribe(connection.connection_id, topic)
        elif kind == "publish" and valid_topic:
            published = {"topic": topic, "payload": fields.get("payload")}
            await hub.broadcast({"type": "published", "data": published}, topic=topic)
        elif kind == "direct" and isinstance(user, str) and user:
            direct = {"user": user, "payload": fields.get("payload")}
            await hub.send_to(user, {"type": "direct", "data": direct})
        elif kind == "whoami":
            await ws.send_json({"type": "whoami", "data": connection.user_key})


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=40),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
topics = st.sampled_from(["room-a", "room-b", "room-c"]) | st.text(max_size=300)
users = st.sampled_from(["alice", "bob", "carol", "mallory"]) | st.text(max_size=20)
types = (
    st.sampled_from(
        [
            *("subscribe", "unsubscribe", "publish", "direct", "whoami", "ping", "pong"),
            *("hello", "ack", "error", "resync", "auth.refresh"),
        ]
    )
    | st.text(max_size=130)
    | json_values
)
data = (
    st.fixed_dictionaries(
        {},
        optional={"topic": topics, "user": users, "payload": json_values, "token": st.text()},
    )
    | json_values
)
envelopes = st.fixed_dictionaries(
    {"type": types},
    optional={"data": data, "request_id": st.none() | st.text(max_size=140) | st.integers()},
)
known_topics = st.sampled_from(["room-a", "room-b", "room-c"])
known_users = st.sampled_from(["alice", "bob", "carol", "mallory", "nobody"])
operations = st.one_of(
    st.builds(lambda t: {"type": "subscribe", "data": {"topic": t}}, known_topics),
    st.builds(
        lambda t, p: {"type": "publish", "data": {"topic": t, "payload": p}},
        known_topics,
        json_values,
    ),
    st.builds(
        lambda u, p: {"type": "direct", "data": {"user": u, "payload": p}},
        known_users,
        json_values,
    ),
).map(json.dumps)
text_frames = st.one_of(
    operations,
    operations,
    envelopes.map(json.dumps),
    st.text(max_size=200),
    json_values.map(json.dumps),
    st.sampled_from(["", "{", "null", "[]", '{"type":""}', '{"type":"x"' + "]" * 50]),
)


def _fragmented(text: str, cuts: list[int]) -> bytes:
    """``text`` as a TEXT frame and CONT frames split at byte offsets ``cuts``."""
    body = text.encode()
    edges = [0, *sorted({c % (len(body) + 1) for c in cuts}), len(body)]
    pieces = [body[a:b] for a, b in itertools.pairwise(edges)]
    return b"".join(
        encode_frame(TEXT if i == 0 else CONT, piece, fin=i == len(pieces) - 1)
        for i, piece in enumerate(pieces)
    )


whole_text = text_frames.map(lambda t: encode_frame(TEXT, t.encode()))
raw_frames = st.one_of(
    whole_text,
    whole_text,
    st.builds(_fragmented, text_frames, st.lists(st.integers(0, 400), max_size=3)),
    st.builds(encode_frame, st.sampled_from([PING, PONG]), st.binary(max_size=125)),
    st.binary(max_size=60).map(lambda b: encode_frame(TEXT, b + b"\xff")),  # never UTF-8
    st.builds(
        encode_frame,
        st.integers(0, 15),
        st.binary(max_size=300),
        fin=st.booleans(),
        rsv=st.integers(0, 7),
        mask=st.booleans(),
    ),
    st.binary(min_size=1, max_size=40),
)
raw_chunks = st.lists(raw_frames, min_size=1, max_size=12)


async def _observe(ws: ClientConnection, seen: list[dict[str, Any]]) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            seen.append(json.loads(await ws.recv()))


def _misdelivered(user: str, topic: str | None, seen: list[dict[str, Any]]) -> list[Any]:
    wrong = []
    for envelope in seen:
        data = envelope.get("data")
        if envelope["type"] == "published" and (topic is None or data["topic"] != topic):
            wrong.append(envelope)
        if envelope["type"] == "direct" and data["user"] != user:
            wrong.append(envelope)
    return wrong


async def _fuzz(
    session_for: Callable[[str, WebSocketHub], Callable[[Any], Coroutine[Any, Any, int | None]]],
    strategy: st.SearchStrategy[Any],
    examples: int,
    **overrides: Any,
) -> list[int | None]:
    ws_settings = make_settings(**overrides)
    app, hub, _router = build_router_app(ws_settings, handler=fuzz_handler)
    async with serve(app, settings=ws_settings) as base:
        with capture_all_logs("uvicorn", "tempest_ws", level=20) as logs:
            observers: dict[str, ClientConnection] = {}
            seen: dict[str, list[dict[str, Any]]] = {}
            readers = []
            for user, topic in OBSERVERS.items():
                ws = await connect(ws_url(base), subprotocols=["bearer", token(user)])  # type: ignore[list-item]
                await next_of_type(ws, "hello")
                if topic is not None:
                    await ws.send(json.dumps({"type": "subscribe", "data": {"topic": topic}}))
                observers[user], seen[user] = ws, []
            await until(lambda: hub.stats().subscriptions == 2)
            for user, ws in observers.items():
                readers.append(asyncio.create_task(_observe(ws, seen[user])))

            loop = asyncio.get_running_loop()
            codes = await fuzz_in_thread(
                loop, session_for(base, hub), strategy, examples, ALLOWED_CLOSES
            )

            # The observers are alive and reachable: one delivery each, by topic and by user.
            for user, topic in OBSERVERS.items():
                if topic is not None:
                    await hub.broadcast(
                        {"type": "published", "data": {"topic": topic, "payload": "final"}},
                        topic=topic,
                    )
                await hub.send_to(user, {"type": "direct", "data": {"user": user}})
            for user, topic in OBSERVERS.items():
                expected = 2 if topic is not None else 1

                def finals(user: str = user) -> int:
                    return sum(
                        1
                        for e in seen[user]
                        if e["type"] in ("published", "direct")
                        and (e["data"].get("payload") == "final" or e["type"] == "direct")
                    )

                await until(lambda f=finals, n=expected: f() >= n)  # type: ignore[misc]
                assert _misdelivered(user, topic, seen[user]) == []
            fuzzed = sum(
                1
                for envelopes_seen in seen.values()
                for e in envelopes_seen
                if e["type"] in ("published", "direct") and e["data"].get("payload") != "final"
            )
            assert fuzzed > 0, "no generated delivery reached an observer: the check is vacuous"
            async with connect(ws_url(base), subprotocols=["bearer", token("fresh")]) as fresh:  # type: ignore[list-item]
                await next_of_type(fresh, "hello")
            for ws in observers.values():
                await ws.close()
            await asyncio.gather(*readers)
            await until(lambda: hub.stats().connections == 0)
    assert "Exception in ASGI application" not in logs.text
    assert "handler failed" not in logs.text
    return codes


def _envelope_session(base: str, hub: WebSocketHub) -> Callable[[Any], Coroutine[Any, Any, Any]]:
    async def session(frames: list[str]) -> int | None:
        async with connect(ws_url(base), subprotocols=["bearer", token("mallory")]) as ws:  # type: ignore[list-item]
            await next_of_type(ws, "hello")
            code: int | None = None
            try:
                for frame in frames:
                    await ws.send(frame)
                await ws.send(json.dumps({"type": "whoami", "request_id": "end"}))
                await next_of_type(ws, "whoami")  # everything before it was processed
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd is not None else CloseCode.ABNORMAL
        await until(lambda: not hub.connections_of("mallory"))
        return code

    return session


def _raw_session(base: str, hub: WebSocketHub) -> Callable[[Any], Coroutine[Any, Any, Any]]:
    async def session(chunks: list[bytes]) -> int | None:
        client = await RawClient.connect(base, token=token("mallory"))
        try:
            assert client.status == 101
            await client.read_frame()  # hello
            for chunk in chunks:
                await client.send(chunk)
            # A clean close, then zero bytes: whatever partial frame the fuzz left open is
            # completed and followed by unmasked (illegal) frames, so the server always
            # reaches a verdict instead of waiting for bytes that never come.
            await client.send(encode_frame(CLOSE, close_payload(CloseCode.NORMAL)))
            await client.send(b"\x00" * 1100)
            _, closing = await client.frames_until_close()
        finally:
            await client.close()
        await until(lambda: not hub.connections_of("mallory"))
        return closing.close_code if closing is not None else None

    return session


async def test_fuzzed_envelopes_never_crash_never_1011_never_misdeliver() -> None:
    codes = await _fuzz(_envelope_session, st.lists(text_frames, max_size=25), examples=100)
    assert len(codes) >= 100


async def test_fuzzed_raw_frames_never_crash_never_1011_never_misdeliver() -> None:
    codes = await _fuzz(_raw_session, raw_chunks, examples=200, WS_MAX_MESSAGE_BYTES=1024)
    assert len(codes) >= 200
