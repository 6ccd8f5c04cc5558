"""A handler's dependency plan does what FastAPI's ``solve_dependencies`` does.

Each tree is solved both ways, by the plan and by FastAPI, against the same
``WebSocket``: the values, and the calls in the order they happened, must be equal.
Shapes the plan does not take are left to FastAPI (``plan`` is ``None``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from typing import Annotated, Any

import pytest
from fastapi import BackgroundTasks, Depends, Query, Security
from fastapi.dependencies.utils import solve_dependencies
from fastapi.security import OAuth2PasswordBearer, SecurityScopes
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.websockets import WebSocket

from tempest_ws import WebSocketConnection, current_connection, current_user
from tempest_ws.router.events._handlers import read_handler
from tempest_ws.router.events._plan import Plan
from tempest_ws.router.events._solve import Solver

CALLS: list[str] = []


async def _never_receive() -> dict[str, Any]:
    raise AssertionError("a dependency read the socket")


async def _never_send(message: Any) -> None:
    raise AssertionError("a dependency wrote to the socket")


def _websocket(stack: AsyncExitStack) -> WebSocket:
    scope: dict[str, Any] = {
        "type": "websocket",
        "path": "/ws",
        "headers": [],
        "query_string": b"",
        "path_params": {},
        "fastapi_astack": stack,
        "fastapi_inner_astack": stack,
        "fastapi_function_astack": stack,
    }
    return WebSocket(scope, _never_receive, _never_send)


def _solver(handle: Callable[..., Any]) -> Solver:
    solver = read_handler("x", handle).solver
    assert solver is not None
    return solver


async def _both(handle: Callable[..., Any]) -> None:
    """Solve ``handle``'s dependencies with the plan and with FastAPI; they must agree."""
    solver = _solver(handle)
    plan = solver.plan
    assert isinstance(plan, Plan)
    async with AsyncExitStack() as stack:
        ws = _websocket(stack)
        response = Response()
        CALLS.clear()
        planned = await solver.solve(ws, response)
        planned_calls = list(CALLS)
        CALLS.clear()
        solved = await solve_dependencies(
            request=ws,
            dependant=solver.dependant,
            body=None,
            response=response,
            async_exit_stack=stack,
            embed_body_fields=False,
        )
        assert not solved.errors
        assert planned == solved.values
        assert planned_calls == CALLS
        assert planned_calls, "the tree called nothing: the comparison proves nothing"


async def leaf() -> str:
    CALLS.append("leaf")
    return "leaf"


async def other_leaf() -> str:
    CALLS.append("other")
    return "other"


async def middle(a: Annotated[str, Depends(leaf)], b: Annotated[str, Depends(other_leaf)]) -> str:
    CALLS.append("middle")
    return f"middle({a},{b})"


async def fresh_leaf() -> int:
    CALLS.append("fresh")
    return len(CALLS)


async def caches_above_a_fresh_leaf(
    value: Annotated[int, Depends(fresh_leaf, use_cache=False)],
) -> int:
    CALLS.append("above")
    return value


async def with_socket(ws: WebSocket, connection: HTTPConnection, response: Response) -> str:
    CALLS.append("socket")
    assert ws is connection
    response.headers["x-seen"] = "1"
    return ws.url.path


async def test_one_dependency() -> None:
    async def handle(value: Annotated[str, Depends(leaf)]) -> None:
        """One."""

    await _both(handle)


async def test_sub_dependencies_in_fastapi_order() -> None:
    async def handle(
        first: Annotated[str, Depends(middle)], second: Annotated[str, Depends(other_leaf)]
    ) -> None:
        """A tree."""

    await _both(handle)


async def test_a_repeated_dependency_is_called_once_unless_it_asks_not_to_be_cached() -> None:
    async def handle(
        a: Annotated[str, Depends(leaf)],
        b: Annotated[str, Depends(leaf)],
        c: Annotated[str, Depends(leaf, use_cache=False)],
        d: Annotated[str, Depends(middle)],
    ) -> None:
        """Cache rules."""

    await _both(handle)


async def test_a_cached_dependency_still_solves_its_uncached_sub_dependency() -> None:
    async def handle(
        a: Annotated[int, Depends(caches_above_a_fresh_leaf)],
        b: Annotated[int, Depends(caches_above_a_fresh_leaf)],
    ) -> None:
        """FastAPI solves sub-dependencies before it looks in its cache."""

    await _both(handle)
    solver = _solver(handle)
    assert solver.plan is not None
    async with AsyncExitStack() as stack:
        CALLS.clear()
        await solver.solve(_websocket(stack), Response())
        assert CALLS == ["fresh", "above", "fresh"]


async def test_the_websocket_connection_and_response_are_given() -> None:
    async def handle(path: Annotated[str, Depends(with_socket)]) -> None:
        """Special parameters."""

    await _both(handle)


async def broken() -> str:
    CALLS.append("broken")
    raise LookupError("no database")


async def test_an_exception_stops_the_calls_after_it() -> None:
    async def handle(
        a: Annotated[str, Depends(leaf)],
        b: Annotated[str, Depends(broken)],
        c: Annotated[str, Depends(other_leaf)],
    ) -> None:
        """Raises halfway."""

    solver = _solver(handle)
    assert solver.plan is not None
    async with AsyncExitStack() as stack:
        CALLS.clear()
        with pytest.raises(LookupError, match="no database"):
            await solver.solve(_websocket(stack), Response())
    assert CALLS == ["leaf", "broken"]


async def yields() -> AsyncIterator[str]:
    yield "yielded"


def sync_dependency() -> str:
    return "sync"


class ClassDependency:
    pass


class CallableDependency:
    async def __call__(self) -> str:
        return "callable"


async def reads_query(limit: Annotated[int, Query()] = 3) -> int:
    return limit


async def wants_scopes(scopes: SecurityScopes) -> list[str]:
    return scopes.scopes


async def wants_tasks(tasks: BackgroundTasks) -> None:
    return None


async def above_sync(value: Annotated[str, Depends(sync_dependency)]) -> str:
    return value


@pytest.mark.parametrize(
    "dependency",
    [
        Depends(yields),
        Depends(sync_dependency),
        Depends(ClassDependency),
        Depends(CallableDependency()),
        Depends(reads_query),
        Depends(OAuth2PasswordBearer(tokenUrl="token")),
        Security(leaf, scopes=["read"]),
        Depends(wants_scopes),
        Depends(wants_tasks),
        Depends(above_sync),
    ],
    ids=[
        "yield",
        "sync",
        "class",
        "callable instance",
        "query parameter",
        "security scheme",
        "security scopes",
        "SecurityScopes parameter",
        "BackgroundTasks",
        "sync sub-dependency",
    ],
)
def test_shapes_the_plan_does_not_take_are_left_to_fastapi(dependency: Any) -> None:
    async def handle(value: Any = dependency) -> None:
        """Left to FastAPI."""

    assert _solver(handle).plan is None


def test_the_connection_and_user_dependencies_are_planned() -> None:
    async def handle(
        user: Annotated[str, Depends(current_user)],
        connection: Annotated[WebSocketConnection, Depends(current_connection)],
    ) -> None:
        """Who is asking."""

    assert _solver(handle).plan is not None
