"""A handler's FastAPI dependencies, solved for one message by FastAPI itself.

FastAPI's ``solve_dependencies`` is given the connection's ``WebSocket`` as the request
and the message's own ``AsyncExitStack``: ``yield`` dependencies clean up when that
stack closes, right after the message. Its signature differs across the supported
FastAPI releases only in arguments passed here by keyword with defaults, and releases
from 0.121 read the stacks from the request's scope rather than from the argument, so
both are given.

The scope is per message: an in-order handler runs alone, so its stacks are written
into the shared ``WebSocket``'s scope; a concurrent one gets a shallow copy of the
``WebSocket`` whose scope names its own stack. The ``WebSocket``'s headers, query
parameters and cookies are parsed once per connection (`prepare()`), not per message.
"""

from __future__ import annotations

import copy
from contextlib import AsyncExitStack
from typing import Any, Final

from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import solve_dependencies
from starlette.responses import Response
from starlette.websockets import WebSocket

from tempest_ws.exceptions import WebSocketError
from tempest_ws.wire.messages import INVALID_DATA

__all__ = ["prepare", "solve"]

_STACK_KEYS: Final = ("fastapi_astack", "fastapi_inner_astack", "fastapi_function_astack")


def prepare(ws: WebSocket) -> Response:
    """Parse what dependencies read from ``ws`` once; the connection's shared response.

    The ``Response`` stands for the one FastAPI would make per call: a WebSocket never
    sends it, so one per connection is enough.
    """
    _ = ws.headers, ws.query_params, ws.cookies  # cached on ws, and on its copies
    return Response()


def _describe(errors: list[Any]) -> str:
    shown = [f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('type')}" for e in errors[:5]]
    return "invalid request: " + ", ".join(shown)


async def solve(
    dependant: Dependant,
    ws: WebSocket,
    stack: AsyncExitStack,
    response: Response,
    *,
    alone: bool,
) -> dict[str, Any]:
    """The values of ``dependant``'s parameters for one message.

    Args:
        alone: no other message of the connection is being solved or handled (an
            in-order handler): the shared scope may name this message's stack.

    Raises:
        WebSocketError: ``invalid_data`` when a dependency's own parameters (query,
            headers) do not validate.
        Exception: whatever a dependency raised.
    """
    if alone:
        request = ws
        scope = ws.scope
    else:
        request = copy.copy(ws)
        scope = request.scope = dict(ws.scope)
    for key in _STACK_KEYS:
        scope[key] = stack
    solved = await solve_dependencies(
        request=request,
        dependant=dependant,
        body=None,
        response=response,
        dependency_overrides_provider=scope.get("app"),
        async_exit_stack=stack,
        embed_body_fields=False,
    )
    if solved.errors:
        raise WebSocketError(INVALID_DATA, _describe(list(solved.errors)))
    return solved.values
