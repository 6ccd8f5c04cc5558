"""The AsyncAPI 3.0.0 document of one WebSocket endpoint, generated from its registry."""

from __future__ import annotations

from tempest_ws.asyncapi._document import (
    ASYNCAPI_VERSION,
    CLOSE_CODES_EXTENSION,
    add_asyncapi_route,
    asyncapi_document,
)

__all__ = [
    "ASYNCAPI_VERSION",
    "CLOSE_CODES_EXTENSION",
    "add_asyncapi_route",
    "asyncapi_document",
]
