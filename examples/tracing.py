"""Tracing: an OpenTelemetry span per inbound message, and trace context across nodes.

Needs the ``otel`` extra and an SDK (``pip install 'opentelemetry-api>=1.20'
opentelemetry-sdk``). Run it (spans are printed to the console)::

    WS_JWT_SECRET=change-me-to-32-bytes-or-more-please python -m examples.tracing
"""

from __future__ import annotations

# --8<-- [start:app]
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


async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
    """Relay ``chat.send`` to its room. Runs inside each message's span."""
    while True:
        incoming = await receive_envelope(ws)  # its span is current until the next call
        if incoming.envelope.type == "chat.send":
            with tracer.start_as_current_span("chat.relay"):  # a child of the message
                data = incoming.envelope.data
                await hub.broadcast(  # other nodes trace their fan-out in this trace
                    {"type": "chat.message", "data": {"text": data["text"]}},
                    topic=data["room"],
                )


def build_app(
    settings: WebSocketSettings, tracer_provider: TracerProvider | None = None
) -> FastAPI:
    """The app, traced with ``tracer_provider`` (the global provider by default)."""
    hub = WebSocketHub.from_settings(settings, tracing=Tracing(tracer_provider))
    app = FastAPI()
    app.include_router(
        make_websocket_router(
            handler,
            hub=hub,  # the router traces with the hub's Tracing
            bearer_resolver=jwt_bearer_resolver(settings),
            settings=settings,
            builtins=["subscribe"],
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
