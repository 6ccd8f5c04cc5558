"""tempest_ws: authenticated, heartbeated WebSockets for FastAPI with a hub that scales out.

Importing this package is cheap: it does not import redis, uvicorn or websockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tempest_ws._types import BearerResolver
from tempest_ws._version import __version__
from tempest_ws.asyncapi._document import add_asyncapi_route, asyncapi_document
from tempest_ws.backplane import Backplane, InMemoryBackplane
from tempest_ws.exceptions import (
    BackplaneError,
    CapacityError,
    ConfigurationError,
    ConnectionClosedError,
    ConnectionStateError,
    EnvelopeError,
    MissingDependencyError,
    TempestWSError,
    TopicLimitError,
    UnencodableMessageError,
    WebSocketError,
)
from tempest_ws.history import HistoryPolicy, MemoryHistory, requested_position
from tempest_ws.hub._connection import WebSocketConnection
from tempest_ws.hub._hub import ClusterStats, HistoryStats, HubStats, WebSocketHub
from tempest_ws.hub._state import ConnectionState
from tempest_ws.observe.tracing import Tracing
from tempest_ws.router._router import WebSocketRouter, make_websocket_router
from tempest_ws.router.auth import jwt_bearer_resolver, origin_allowed
from tempest_ws.router.events._reply import current_connection, current_user
from tempest_ws.router.realtime import (
    BUILTIN_OPERATIONS,
    PRESENCE_JOIN,
    PRESENCE_LEAVE,
    Incoming,
    OnConnect,
    OnDisconnect,
    TopicAuthorizer,
    allow_any_topic,
    error_reply,
    receive_envelope,
    reply_envelope,
)
from tempest_ws.router.server import uvicorn_options
from tempest_ws.settings import WebSocketSettings
from tempest_ws.wire.codes import CLOSE_CODE_INFO, CloseCode, describe_close_code
from tempest_ws.wire.envelope import WSEnvelope, decode_envelope, encode_envelope
from tempest_ws.wire.messages import MessageRegistry

if TYPE_CHECKING:
    from tempest_ws.backplane.redis import RedisBackplane
    from tempest_ws.history.redis import RedisHistory

__all__ = [
    "BUILTIN_OPERATIONS",
    "CLOSE_CODE_INFO",
    "PRESENCE_JOIN",
    "PRESENCE_LEAVE",
    "Backplane",
    "BackplaneError",
    "BearerResolver",
    "CapacityError",
    "CloseCode",
    "ClusterStats",
    "ConfigurationError",
    "ConnectionClosedError",
    "ConnectionState",
    "ConnectionStateError",
    "EnvelopeError",
    "HistoryPolicy",
    "HistoryStats",
    "HubStats",
    "InMemoryBackplane",
    "Incoming",
    "MemoryHistory",
    "MessageRegistry",
    "MissingDependencyError",
    "OnConnect",
    "OnDisconnect",
    "RedisBackplane",
    "RedisHistory",
    "TempestWSError",
    "TopicAuthorizer",
    "TopicLimitError",
    "Tracing",
    "UnencodableMessageError",
    "WSEnvelope",
    "WebSocketConnection",
    "WebSocketError",
    "WebSocketHub",
    "WebSocketRouter",
    "WebSocketSettings",
    "__version__",
    "add_asyncapi_route",
    "allow_any_topic",
    "asyncapi_document",
    "current_connection",
    "current_user",
    "decode_envelope",
    "describe_close_code",
    "encode_envelope",
    "error_reply",
    "jwt_bearer_resolver",
    "make_websocket_router",
    "origin_allowed",
    "receive_envelope",
    "reply_envelope",
    "requested_position",
    "uvicorn_options",
]


def __getattr__(name: str) -> Any:
    # Redis classes are imported on first use: ``import tempest_ws`` never imports redis.
    if name == "RedisBackplane":
        from tempest_ws.backplane.redis import RedisBackplane

        return RedisBackplane
    if name == "RedisHistory":
        from tempest_ws.history.redis import RedisHistory

        return RedisHistory
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
