"""Helpers for testing applications built on tempest_ws against a real server."""

from __future__ import annotations

from tempest_ws.testing._server import (
    DEFAULT_TIMEOUT,
    FakeTokens,
    HubProbe,
    LiveClient,
    LiveServer,
    ProbedDelivery,
    ProbedFrame,
    TokenCarrier,
    expect_close,
    expect_envelope,
    live_client,
    live_server,
    make_token,
    serve,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "FakeTokens",
    "HubProbe",
    "LiveClient",
    "LiveServer",
    "ProbedDelivery",
    "ProbedFrame",
    "TokenCarrier",
    "expect_close",
    "expect_envelope",
    "live_client",
    "live_server",
    "make_token",
    "serve",
]
