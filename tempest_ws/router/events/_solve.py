"""A handler's FastAPI dependencies, solved for one message by FastAPI itself.

FastAPI's ``solve_dependencies`` is given the connection's ``WebSocket`` as the request.
Its signature differs across the supported FastAPI releases only in arguments passed
here by keyword with defaults, and releases from 0.121 read the exit stacks from the
request's scope rather than from the argument, so both are given.

Exit stacks hold what ``yield`` dependencies clean up, and nothing else: FastAPI pushes
onto them only the context of a generator dependency. So a message gets stacks of its
own, closed right after it (`Solver.solve_in()`), only when its dependency tree may
``yield`` or when the app has dependency overrides (an override may ``yield``). Any
other message (`Solver.solve()`) is solved against the connection's idle stack, put
into the ``WebSocket``'s scope once by `prepare()`: FastAPI pushes nothing onto it, so
no scope is written and no stack made per message, even for a concurrent handler.

With its own stacks, an in-order handler runs alone, so its stacks are written into
the shared ``WebSocket``'s scope until they close; a concurrent one gets a shallow copy
of the ``WebSocket`` whose scope names its own stacks. The ``WebSocket``'s headers,
query parameters and cookies are parsed once per connection (`prepare()`), not per
message.
"""

from __future__ import annotations

import copy
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AsyncExitStack
from typing import Any, Final

from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import SolvedDependency, solve_dependencies
from starlette.responses import Response
from starlette.websockets import WebSocket

from tempest_ws.exceptions import WebSocketError
from tempest_ws.router.events._plan import Plan, plan_of
from tempest_ws.wire.messages import INVALID_DATA

__all__ = ["Solver", "may_yield", "overrides_of", "prepare", "values"]

_STACK_KEYS: Final = ("fastapi_astack", "fastapi_inner_astack", "fastapi_function_astack")


def prepare(ws: WebSocket, idle: AsyncExitStack) -> Response:
    """Ready ``ws`` for its connection's messages; the connection's shared response.

    Parses what dependencies read from ``ws`` once and puts ``idle``, the connection's
    idle exit stack, into its scope: FastAPI pushes nothing onto it; whatever a
    dependency pushes onto its request's stack by itself is cleaned up when the caller
    closes ``idle``, at the connection's end. The ``Response`` stands for the one
    FastAPI would make per call: a WebSocket never sends it, so one per connection is
    enough.
    """
    _ = ws.headers, ws.query_params, ws.cookies  # cached on ws, and on its copies
    for key in _STACK_KEYS:
        ws.scope[key] = idle
    return Response()


def _functions(call: Callable[..., Any]) -> Iterator[Any]:
    """What FastAPI inspects to tell a generator dependency: ``call``, unwrapped, and
    its ``__call__`` (partials stripped)."""
    for candidate in (call, getattr(call, "__call__", None)):  # noqa: B004 - FastAPI's rule
        while isinstance(candidate, functools.partial):
            candidate = candidate.func
        if candidate is not None:
            yield candidate
            yield inspect.unwrap(candidate)


def may_yield(dependant: Dependant) -> bool:
    """Whether a dependency of ``dependant``'s tree is a generator (may use the stacks)."""
    for sub in dependant.dependencies:
        call = sub.call
        if call is None or may_yield(sub):
            return True
        for function in _functions(call):
            if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
                return True
    return False


def _describe(errors: list[Any]) -> str:
    shown = [f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('type')}" for e in errors[:5]]
    return "invalid request: " + ", ".join(shown)


def values(solved: SolvedDependency) -> dict[str, Any]:
    """The dependencies' values FastAPI solved.

    Raises:
        WebSocketError: ``invalid_data`` when a dependency's own parameters (query,
            headers) did not validate.
    """
    if solved.errors:
        raise WebSocketError(INVALID_DATA, _describe(list(solved.errors)))
    return solved.values


def overrides_of(app: object) -> Any:
    """``app`` when it overrides a dependency (FastAPI's provider), else ``None``: then
    a message is solved by FastAPI with stacks of its own (`Solver.solve_in()`)."""
    return app if getattr(app, "dependency_overrides", None) else None


class Solver:
    """FastAPI's ``solve_dependencies`` for one handler's dependencies.

    A tree of plain ``async def`` dependencies is solved by its
    [`Plan`][tempest_ws.router.events._plan.Plan] (FastAPI's walk, done once) while the
    app overrides no dependency; any other by ``solve_dependencies`` per message.

    Args:
        dependant: FastAPI's view of the handler's dependency parameters.
    """

    __slots__ = ("dependant", "leaves", "plan", "yields")

    def __init__(self, dependant: Dependant) -> None:
        self.dependant = dependant
        self.yields = may_yield(dependant)
        self.plan: Plan | None = None if self.yields else plan_of(dependant)
        self.leaves = None if self.plan is None else self.plan.leaves
        """The plan's `leaves <Plan.leaves>`, when it has them."""

    def solve(self, ws: WebSocket, response: Response) -> Awaitable[dict[str, Any]]:
        """The dependencies' values for one message that needs no stack of its own
        (no ``yield`` in the tree, no dependency overrides in the app; otherwise
        `solve_in()` with a stack of its own).

        The awaitable raises `WebSocketError` as `values()`, or whatever a dependency
        raised.
        """
        plan = self.plan
        if plan is not None:
            return plan.values(ws, response)
        return self._solve(ws, response)

    async def _solve(self, ws: WebSocket, response: Response) -> dict[str, Any]:
        solved = await solve_dependencies(
            request=ws,
            dependant=self.dependant,
            body=None,
            response=response,
            dependency_overrides_provider=None,
            async_exit_stack=ws.scope["fastapi_inner_astack"],
            embed_body_fields=False,
        )
        return values(solved)

    async def solve_in(
        self,
        stack: AsyncExitStack,
        ws: WebSocket,
        response: Response,
        *,
        alone: bool,
    ) -> dict[str, Any]:
        """The dependencies' values for one message, ``yield`` ones entered in ``stack``.

        Args:
            alone: no other message of the connection is being solved or handled (an
                in-order handler): the shared scope may name this message's stack.

        Raises:
            WebSocketError: as `values()`.
            Exception: whatever a dependency raised.
        """
        if alone:
            request = ws
            scope = ws.scope
            # The last thing the stack does: the scope names the idle stack again.
            stack.callback(scope.update, {key: scope[key] for key in _STACK_KEYS})
        else:
            request = copy.copy(ws)
            scope = request.scope = dict(ws.scope)
        for key in _STACK_KEYS:
            scope[key] = stack
        provider = overrides_of(ws.scope.get("app"))
        solved = await solve_dependencies(
            request=request,
            dependant=self.dependant,
            body=None,
            response=response,
            dependency_overrides_provider=provider,
            async_exit_stack=stack,
            embed_body_fields=False,
        )
        return values(solved)
