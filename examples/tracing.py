"""Tracing: an OpenTelemetry span per inbound message, and trace context across nodes.

Needs the ``otel`` extra and an SDK (``pip install 'opentelemetry-api>=1.20'
opentelemetry-sdk``). Run it (spans are printed to the console)::

    WS_JWT_SECRET=change-me-to-32-bytes-or-more-please python -m examples.tracing
"""

from __future__ import annotations

# --8<-- [start:app]
from collections.abc import Collection, Mapping

from fastapi import FastAPI, WebSocket
from opentelemetry import trace
from opentelemetry.trace import TracerProvider

from tempest_ws import (
    Tracing,
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    jwt_bearer_resolver,
    make_websocket_router,
    receive_envelope,
)

tracer = trace.get_tracer("chat")


def build_app(
    settings: WebSocketSettings,
    tracer_provider: TracerProvider | None = None,
    *,
    rooms: Mapping[str, Collection[str]] | None = None,
) -> FastAPI:
    """The app, traced with ``tracer_provider`` (the global provider by default).

    ``rooms`` maps a room name to the user ids of its members (your database, in a
    real app): a user subscribes and posts to ``room:<name>`` only as a member.
    """
    members = rooms if rooms is not None else {}

    async def may_join(connection: WebSocketConnection, topic: str) -> bool:
        kind, _, name = topic.partition(":")
        return kind == "room" and connection.user_key in members.get(name, ())

    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        """Relay ``chat.send`` to a room the sender may read. Runs inside each message's span."""
        while True:
            incoming = await receive_envelope(ws)  # its span is current until the next call
            envelope = incoming.envelope
            if envelope.type != "chat.send":
                continue
            data = envelope.data if isinstance(envelope.data, dict) else {}
            room, text = data.get("room"), data.get("text")
            if not isinstance(room, str) or not isinstance(text, str):
                await hub.reply_error(
                    connection.connection_id, envelope, "invalid_data", "room, text"
                )
            elif not await may_join(connection, room):  # the subscription rule, for posting
                await hub.reply_error(
                    connection.connection_id, envelope, "forbidden", "not a member"
                )
            else:
                with tracer.start_as_current_span("chat.relay"):  # a child of the message
                    await hub.broadcast(  # other nodes trace their fan-out in this trace
                        {"type": "chat.message", "data": {"text": text}}, topic=room
                    )

    hub = WebSocketHub.from_settings(settings, tracing=Tracing(tracer_provider))
    app = FastAPI()
    app.include_router(
        make_websocket_router(
            handler,
            hub=hub,  # the router traces with the hub's Tracing
            bearer_resolver=jwt_bearer_resolver(settings),
            settings=settings,
            builtins=["subscribe"],
            topic_authorizer=may_join,
        )
    )
    return app


# --8<-- [end:app]


if __name__ == "__main__":
    import logging

    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    from tempest_ws.server import run

    # --8<-- [start:sdk]
    provider = SdkTracerProvider()
    provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))  # or OTLP
    trace.set_tracer_provider(provider)
    # --8<-- [end:sdk]
    settings = WebSocketSettings()
    logging.basicConfig(level=logging.INFO)
    run(build_app(settings), settings=settings)
