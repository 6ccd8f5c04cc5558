"""Which handlers' dependencies may ``yield``: those get exit stacks per message."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Annotated, Any

import pytest
from fastapi import Depends
from fastapi.security import OAuth2PasswordBearer

from tempest_ws.router.events._handlers import read_handler
from tempest_ws.router.events._solve import may_yield


async def plain_async() -> int:
    return 1


def plain_sync() -> int:
    return 1


def sync_gen() -> Iterator[int]:
    yield 1


async def async_gen() -> AsyncIterator[int]:
    yield 1


def wrapped(call: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(call)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return call(*args, **kwargs)

    return wrapper


class Counter:
    """A class dependency: calling it makes an instance, never a generator."""


class YieldingCallable:
    async def __call__(self) -> AsyncIterator[int]:
        yield 1


class PlainCallable:
    async def __call__(self) -> int:
        return 1


async def nested(value: Annotated[int, Depends(async_gen)]) -> int:
    return value


def _handler_with(call: Any) -> bool:
    async def handle(value: Any = Depends(call)) -> None:  # noqa: B008 - a local call
        """Nothing."""

    solver = read_handler("x", handle).solver
    assert solver is not None
    assert may_yield(solver.dependant) is solver.yields
    return solver.yields


@pytest.mark.parametrize(
    "call",
    [sync_gen, async_gen, functools.partial(async_gen), wrapped(async_gen), YieldingCallable()],
    ids=["generator", "async generator", "partial", "wrapped", "__call__"],
)
def test_a_generator_dependency_in_any_shape_yields(call: Any) -> None:
    assert _handler_with(call) is True


def test_a_generator_sub_dependency_yields() -> None:
    assert _handler_with(nested) is True


@pytest.mark.parametrize(
    "call",
    [plain_async, plain_sync, Counter, PlainCallable(), OAuth2PasswordBearer(tokenUrl="t")],
    ids=["async", "sync", "class", "__call__", "security scheme"],
)
def test_a_dependency_that_returns_does_not_yield(call: Any) -> None:
    assert _handler_with(call) is False


def test_a_handler_without_dependencies_has_no_solver() -> None:
    async def handle() -> None:
        """Nothing."""

    assert read_handler("x", handle).solver is None
