"""tempest_ws.tracing: spans per inbound message over a real uvicorn, trace context across
a real Redis backplane, nothing at all when off, and the optional extra."""

from __future__ import annotations

import contextvars
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI, WebSocket
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import BaseModel

from tempest_ws import (
    MessageRegistry,
    Tracing,
    WebSocketConnection,
    WebSocketHub,
    allow_any_topic,
    jwt_bearer_resolver,
    make_websocket_router,
    receive_envelope,
)
from tempest_ws.backplane import InMemoryBackplane, InMemoryBus
from tempest_ws.backplane.packet import decode_packet, encode_packet
from tempest_ws.testing import live_server
from tests.helpers.backplane_nodes import Recorder
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import Peer, make_settings, token, until

SECRET_BODY = "body-7c1e-never-in-a-span"


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def spans(exporter: InMemorySpanExporter, prefix: str = "tempest_ws.") -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# -- inbound messages over a real server -------------------------------------------------


class ChatSend(BaseModel):
    text: str


def traced_app(provider: TracerProvider, *, tracing: bool = True) -> FastAPI:
    settings = make_settings()
    work = provider.get_tracer("tests.handler")
    messages = MessageRegistry()
    messages.inbound("chat.send")(ChatSend)

    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        while True:
            incoming = await receive_envelope(ws)
            with work.start_as_current_span("handler.work"):
                if incoming.envelope.type == "fail":
                    raise RuntimeError(f"handler bug on purpose {SECRET_BODY}")
                await ws.send_json({"type": "echo", "data": incoming.envelope.data})

    messages.inbound("fail")(ChatSend)
    hub = WebSocketHub.from_settings(
        settings,
        tracing=Tracing(tracer_provider=provider) if tracing else None,
        topic_authorizer=allow_any_topic,
    )
    app = FastAPI()
    app.include_router(
        make_websocket_router(
            handler,
            hub=hub,
            bearer_resolver=_resolver,
            settings=settings,
            builtins=True,
            messages=messages,
        )
    )
    return app


_resolver = jwt_bearer_resolver(make_settings())
"""Verifies the token: comparing with a freshly made one failed when a second passed
between the two (the ``exp`` claims differed)."""


async def test_a_span_per_handled_inbound_message(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with (
        live_server(traced_app(provider)) as server,
        server.connect(token("tracy")) as client,
    ):
        await client.send_envelope("chat.send", {"text": SECRET_BODY}, request_id="r-1")
        await client.expect("echo")
        await client.send(json.dumps({"type": "ping", "data": {}, "request_id": "hb"}))
        await client.expect("pong")
        await client.send_envelope("subscribe", {"topic": "room"}, request_id="r-2")
        await client.expect("ack")
        await client.send("{not json")
        assert (await client.expect("error")).data["code"] == "invalid_json"
        await client.send_envelope("subscribe", {"wrong": 1}, request_id="r-3")
        assert (await client.expect("error")).data["code"] == "invalid_data"
        await client.send_envelope("no.such.type", {"text": SECRET_BODY})
        assert (await client.expect("error")).data["code"] == "unknown_type"
        await client.send_envelope("chat.send", {"text": "second"}, request_id="r-4")
        await client.expect("echo")
        connection_id = client.connection_id
    await until(lambda: len(spans(exporter, "tempest_ws.receive")) == 6)

    received = spans(exporter, "tempest_ws.receive")
    assert [s.name for s in received] == [
        "tempest_ws.receive chat.send",
        "tempest_ws.receive subscribe",
        "tempest_ws.receive",
        "tempest_ws.receive subscribe",
        "tempest_ws.receive",
        "tempest_ws.receive chat.send",
    ]  # no span for the ping: heartbeats are not traced
    first, subscribe, not_json, bad_data, unknown, second = received
    for span in received:
        assert span.kind is SpanKind.CONSUMER
        assert span.parent is None  # each message is a trace of its own
        assert attrs(span)["messaging.system"] == "tempest_ws"
        assert attrs(span)["tempest_ws.connection.id"] == connection_id
        assert all(SECRET_BODY not in str(v) for v in attrs(span).values())
        assert token("tracy") not in str(attrs(span))
    assert attrs(first)["tempest_ws.handled_by"] == "handler"
    assert attrs(first)["messaging.message.conversation_id"] == "r-1"
    assert attrs(first)["messaging.message.body.size"] > len(SECRET_BODY)
    assert attrs(subscribe)["tempest_ws.handled_by"] == "router"
    assert subscribe.status.status_code is StatusCode.UNSET
    for span, code in ((not_json, "invalid_json"), (bad_data, "invalid_data")):
        assert span.status.status_code is StatusCode.ERROR
        assert attrs(span)["error.type"] == code
    assert attrs(unknown)["error.type"] == "unknown_type"
    assert attrs(unknown)["tempest_ws.message.type"] == "no.such.type"  # not in the name

    # The handler's work on a message is that message's child.
    work = spans(exporter, "handler.work")
    assert len(work) == 2
    for child, parent in zip(work, (first, second), strict=True):
        assert child.parent is not None
        assert child.parent.span_id == parent.context.span_id
        assert child.context.trace_id == parent.context.trace_id
        # The message is handled once the handler comes back for the next one.
        assert child.end_time is not None
        assert parent.end_time is not None
        assert parent.end_time >= child.end_time


async def test_a_handler_exception_marks_its_message(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with (
        live_server(traced_app(provider)) as server,
        server.connect(token("tracy")) as client,
    ):
        await client.send_envelope("fail", {"text": "x"})
        assert await client.expect_close() == 1011
    await until(lambda: len(spans(exporter, "tempest_ws.receive")) == 1)
    (span,) = spans(exporter, "tempest_ws.receive")
    assert span.name == "tempest_ws.receive fail"
    assert span.status.status_code is StatusCode.ERROR
    assert attrs(span)["error.type"] == "RuntimeError"
    assert SECRET_BODY not in (span.status.description or "")
    assert not span.events  # the exception's message is not recorded: it may quote a body


def test_frames_the_handler_never_took_end_with_the_session(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # In a context of its own, as the endpoint's task is: nothing leaks into other tests.
    contextvars.copy_context().run(_never_taken, provider, exporter)


def _never_taken(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    from tempest_ws.envelope import decode_envelope
    from tempest_ws.router.realtime import ENVELOPE_KEY

    tracer = Tracing(tracer_provider=provider).session("node.conn")
    inbox = []
    for n in range(3):
        text = json.dumps({"type": "chat.send", "data": {"n": n}})
        message: dict[str, Any] = {"type": "websocket.receive", "text": text}
        message[ENVELOPE_KEY] = decode_envelope(text)
        tracer.arrived()
        tracer.inspected(message, "deliver", None)
        inbox.append(message)
    tracer.handler_took(inbox[0])  # the handler works on the first, then the session ends
    assert spans(exporter) == []
    tracer.close()
    done = spans(exporter)
    assert len(done) == 3
    assert [bool(attrs(s).get("tempest_ws.handler_skipped")) for s in done] == [
        False,
        True,
        True,
    ]
    assert all("tempest_ws.span" not in m for m in inbox[:1])


def test_message_spans_link_to_the_span_the_connection_opened_in(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    contextvars.copy_context().run(_linked, provider, exporter)


def _linked(provider: TracerProvider, exporter: InMemorySpanExporter) -> None:
    from tempest_ws.envelope import decode_envelope

    tracing = Tracing(tracer_provider=provider)
    with provider.get_tracer("tests").start_as_current_span("WS /ws") as connection_span:
        tracer = tracing.session("node.conn")  # the endpoint's task, in FastAPI's span
    envelope = decode_envelope('{"type": "subscribe", "data": {"topic": "t"}}')
    tracer.arrived()
    tracer.inspected({"type": "websocket.receive", "text": "{}"}, "builtin", envelope)
    tracer.invalid()  # a built-in whose data failed validation
    tracer.settle()
    (span,) = spans(exporter, "tempest_ws.receive")
    assert span.parent is None
    assert [link.context for link in span.links] == [connection_span.get_span_context()]
    assert attrs(span)["error.type"] == "invalid_data"


async def test_off_by_default_no_spans(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    async with (
        live_server(traced_app(provider, tracing=False)) as server,
        server.connect(token("tracy")) as client,
    ):
        await client.send_envelope("chat.send", {"text": "x"})
        await client.expect("echo")
        await client.send_envelope("subscribe", {"topic": "room"})
        await client.expect("ack")
    assert spans(exporter) == []


# -- across the backplane ---------------------------------------------------------------


async def _member(hub: WebSocketHub, user: str, topic: str) -> tuple[WebSocketConnection, Peer]:
    peer = Peer()
    connection = hub.create_connection(user, send=peer.send)
    await hub.register(connection)
    connection.start()
    assert await hub.subscribe(connection.connection_id, topic)
    return connection, peer


@pytest.fixture
async def two_hubs(
    redis: RedisServer, provider: TracerProvider
) -> AsyncIterator[tuple[WebSocketHub, WebSocketHub]]:
    from tempest_ws.backplane import RedisBackplane

    hubs = [
        WebSocketHub(
            backplane=RedisBackplane(redis.url, timeout=0.5, health_check_interval=0.5),
            tracing=Tracing(tracer_provider=provider),
        )
        for _ in range(2)
    ]
    for hub in hubs:
        await hub.start()
    try:
        yield hubs[0], hubs[1]
    finally:
        for hub in hubs:
            await hub.stop()


@pytest.mark.redis
async def test_trace_context_crosses_a_redis_backplane(
    two_hubs: tuple[WebSocketHub, WebSocketHub],
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    a, b = two_hubs
    remote, peer = await _member(b, "rita", "room")
    publisher = provider.get_tracer("tests.publisher")
    with publisher.start_as_current_span("publish from a") as parent:
        await a.broadcast({"type": "n", "data": 1}, topic="room")
        await a.send_to("rita", {"type": "n", "data": 2})
        await a.send_to_connection(remote.connection_id, {"type": "n", "data": 3})
    await a.broadcast({"type": "n", "data": 4}, topic="room")  # outside any span
    await until(lambda: len(peer.texts()) == 4)

    fan_outs = spans(exporter, "tempest_ws.fan_out")
    assert sorted(s.name for s in fan_outs) == [
        "tempest_ws.fan_out conn",
        "tempest_ws.fan_out topic",
        "tempest_ws.fan_out user",
    ]  # the broadcast made outside a span continues no trace and starts none
    for span in fan_outs:
        assert span.kind is SpanKind.CONSUMER
        assert span.context.trace_id == parent.get_span_context().trace_id
        assert span.parent is not None
        assert span.parent.span_id == parent.get_span_context().span_id
        assert span.parent.is_remote
        assert attrs(span)["tempest_ws.node.id"] == b.node_id
        assert attrs(span)["tempest_ws.packet.node"] == a.node_id
        assert attrs(span)["tempest_ws.recipients"] == 1
        assert attrs(span)["messaging.system"] == "tempest_ws"


@pytest.mark.redis
async def test_trace_context_crosses_the_backplane_on_a_history_topic(
    redis: RedisServer, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # A history topic's packets carry a position and go through the receiving node's
    # sequencer; they carry the publisher's trace context all the same.
    from tempest_ws.backplane import RedisBackplane
    from tempest_ws.history import HistoryPolicy, RedisHistory

    policy = HistoryPolicy(topics=("chat:*",))
    hubs = [
        WebSocketHub(
            backplane=RedisBackplane(redis.url, timeout=0.5, health_check_interval=0.5),
            history=RedisHistory(redis.url, policy=policy, timeout=0.5),
            tracing=Tracing(tracer_provider=provider),
            topic_authorizer=allow_any_topic,
        )
        for _ in range(2)
    ]
    a, b = hubs
    try:
        for hub in hubs:
            await hub.start()
        _, peer = await _member(b, "rita", "chat:1")
        publisher = provider.get_tracer("tests.publisher")
        with publisher.start_as_current_span("publish from a") as parent:
            await a.broadcast({"type": "n", "data": 1}, topic="chat:1")
        await until(lambda: any('"offset":1' in t for t in peer.texts()))
        (fan_out,) = spans(exporter, "tempest_ws.fan_out")
        assert fan_out.context.trace_id == parent.get_span_context().trace_id
        assert attrs(fan_out)["tempest_ws.recipients"] == 1
    finally:
        for hub in hubs:
            await hub.stop()


async def test_packets_carry_trace_context_only_inside_a_span_with_tracing_on(
    provider: TracerProvider,
) -> None:
    published: list[bytes] = []
    bus = InMemoryBus()

    async def hub_with(tracing: Tracing | None) -> WebSocketHub:
        backplane = InMemoryBackplane(bus)
        original = backplane.publish

        async def publish(channel: str, packet: bytes) -> int:
            published.append(packet)
            return await original(channel, packet)

        backplane.publish = publish  # type: ignore[method-assign]
        hub = WebSocketHub(backplane=backplane, tracing=tracing)
        await hub.start()
        return hub

    # A third node listens: a hub skips packets no other node would receive.
    observer = InMemoryBackplane(bus)
    await observer.start("0000000000ff", Recorder())
    for channel in ("topic:t", "user:u"):
        await observer.subscribe(channel)
    plain, traced = await hub_with(None), await hub_with(Tracing(tracer_provider=provider))
    try:
        with provider.get_tracer("tests").start_as_current_span("caller"):
            for hub in (plain, traced):
                await hub.broadcast({"type": "n"}, topic="t")
                await hub.send_to("u", {"type": "n"})
                await hub.send_to_connection(f"{'0' * 12}.x", {"type": "n"})
        await traced.broadcast({"type": "n"}, topic="t")  # tracing on, no span
    finally:
        await plain.stop()
        await traced.stop()
        await observer.stop()
    headers = [json.loads(p.split(b"\n", 1)[0]) for p in published]
    assert len(headers) == 7
    assert all("tp" not in h for h in headers[:3])  # tracing off: never a header
    assert all(set(h["tp"]) == {"traceparent"} for h in headers[3:6])
    assert "tp" not in headers[6]


def test_packet_trace_context_round_trips_and_is_checked() -> None:
    carrier = {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01", "tracestate": "k=v"}
    packet = decode_packet(encode_packet("a" * 12, "topic", "t", "{}", trace=carrier))
    assert packet.trace == carrier
    assert packet.frame == "{}"
    assert decode_packet(encode_packet("a" * 12, "topic", "t", "{}")).trace is None
    with pytest.raises(ValueError, match="malformed"):
        decode_packet(b'{"v":1,"n":"aaaaaaaaaaaa","o":"all","t":"","tp":{"traceparent":1}}')


# -- the optional extra -------------------------------------------------------------------


def _python(script: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    return result.stdout


def test_missing_extra_names_it() -> None:
    # FastAPI may import opentelemetry-api itself: block it only once tempest_ws is loaded.
    script = """
import sys
import tempest_ws
for name in [m for m in sys.modules if m == "opentelemetry" or m.startswith("opentelemetry.")]:
    sys.modules[name] = None
sys.modules["opentelemetry"] = None  # also when FastAPI had not imported it
from tempest_ws.exceptions import MissingDependencyError
try:
    tempest_ws.Tracing()
except MissingDependencyError as exc:
    print(exc.extra, exc)
"""
    out = _python(script).strip()
    assert out.startswith("otel ")
    assert out.endswith("'otel' extra needs: pip install 'opentelemetry-api>=1.20' (otel)")


def test_importing_tempest_ws_imports_no_opentelemetry_of_its_own() -> None:
    script = """
import sys
import fastapi, starlette.websockets  # whatever these import is theirs
before = {m for m in sys.modules if m.startswith("opentelemetry")}
import tempest_ws, tempest_ws.tracing
print(sorted({m for m in sys.modules if m.startswith("opentelemetry")} - before))
"""
    assert _python(script).strip() == "[]"


# -- the documented example ---------------------------------------------------------------


async def test_the_example_traces_its_messages(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    from examples.tracing import build_app

    app = build_app(make_settings(), tracer_provider=provider, rooms={"1": {"ann", "bob"}})
    async with (
        live_server(app) as server,
        server.connect(token("ann")) as ann,
        server.connect(token("bob")) as bob,
    ):
        await ann.send_envelope("subscribe", {"topic": "room:1"}, request_id="s")
        await ann.expect("ack")
        await bob.send_envelope("chat.send", {"room": "room:1", "text": "hi"})
        assert (await ann.expect("chat.message")).data == {"text": "hi"}
        for topic in ("room:2", "inbox:ann"):  # not a member: neither read nor post
            await bob.send_envelope("subscribe", {"topic": topic})
            assert (await bob.expect("error")).data["code"] == "forbidden"
            await bob.send_envelope("chat.send", {"room": topic, "text": "x"})
            assert (await bob.expect("error")).data["code"] == "forbidden"
        await bob.send_envelope("chat.send", {"room": 1})
        assert (await bob.expect("error")).data["code"] == "invalid_data"
    await until(lambda: len(spans(exporter, "tempest_ws.receive")) == 7)
    names = sorted(s.name for s in spans(exporter, "tempest_ws.receive"))
    assert names == ["tempest_ws.receive"] * 4 + ["tempest_ws.receive subscribe"] * 3


async def test_event_handler_messages_are_named_and_unknown_types_are_not(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    settings = make_settings()
    hub = WebSocketHub.from_settings(settings, tracing=Tracing(tracer_provider=provider))
    router = make_websocket_router(hub=hub, bearer_resolver=_resolver, settings=settings)

    @router.on("chat.send")
    async def chat_send(message: ChatSend) -> ChatSend:
        return message

    app = FastAPI()
    app.include_router(router)
    async with live_server(app, settings=settings) as server, server.connect(token("ev")) as ev:
        await ev.send_envelope("chat.send", {"text": "hi"}, request_id="e-1")
        await ev.expect("chat.send.reply")
        await ev.send_envelope(f"made.up.{SECRET_BODY}", {})
        assert (await ev.expect("error")).data["code"] == "unknown_type"
    await until(lambda: len(spans(exporter, "tempest_ws.receive")) == 2)
    event, unknown = spans(exporter, "tempest_ws.receive")
    assert event.name == "tempest_ws.receive chat.send"
    assert attrs(event)["tempest_ws.handled_by"] == "event"
    assert event.status.status_code is StatusCode.UNSET
    assert unknown.name == "tempest_ws.receive"  # a client-chosen type never names a span
    assert unknown.status.status_code is StatusCode.ERROR
    assert attrs(unknown)["error.type"] == "unknown_type"
    assert attrs(unknown)["tempest_ws.handled_by"] == "router"
