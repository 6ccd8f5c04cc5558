"""docs/asyncapi.md: the import line."""

from __future__ import annotations

# --8<-- [start:imports]
from tempest_ws.asyncapi import add_asyncapi_route, asyncapi_document

# --8<-- [end:imports]

__all__ = ["add_asyncapi_route", "asyncapi_document"]
