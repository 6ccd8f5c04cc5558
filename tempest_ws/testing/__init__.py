"""Helpers for testing applications built on tempest_ws against a real server.

- `serve()` runs any ASGI app under a real uvicorn server on a free loopback port
  inside the current event loop; `live_server()` wraps it in a `LiveServer`
  that opens clients, and `live_client()` does both for the one-client case. A
  `LiveClient` has already read the ``hello`` frame.
- `expect_envelope()` and `expect_close()` await the next envelope of a type, or
  the close code, with a bound so a regression fails instead of hanging.
- `FakeTokens` is a token/resolver pair without cryptography; `make_token()`
  signs a JWT the [`jwt_bearer_resolver()`][tempest_ws.router.auth.jwt_bearer_resolver] accepts.
- `HubProbe` records what a [`WebSocketHub`][tempest_ws.hub._hub.WebSocketHub] delivered to
  whom, without changing what it does.

The client side needs the ``websockets`` package and the server side uvicorn (both in
the ``server`` extra). Waits here are bounds, never synchronisation: nothing sleeps to
let something happen.
"""

from __future__ import annotations

from tempest_ws.testing._expect import expect_close, expect_envelope
from tempest_ws.testing._probe import DEFAULT_TIMEOUT, HubProbe, ProbedDelivery, ProbedFrame
from tempest_ws.testing._server import (
    LiveClient,
    LiveServer,
    TokenCarrier,
    live_client,
    live_server,
    serve,
)
from tempest_ws.testing._tokens import FakeTokens, make_token

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
