"""A handler's dependencies as a precomputed list of calls, for the common shape.

FastAPI's ``solve_dependencies`` walks a handler's dependency tree on every call: per
level it classifies each callable, builds its cache key, reads its parameters from the
request and gathers the values. For a message handler that walk is most of the cost of
a small dependency, and its result is the same every time: which functions are called,
in which order, with which other dependencies' results, and which calls FastAPI's
per-call cache answers instead.

`plan_of()` does that walk once, over FastAPI's own ``Dependant`` tree (read by
``fastapi.dependencies.utils.get_dependant``), in FastAPI's order and with its cache
rules (``use_cache``, the cache key of a callable and its scope), into a flat list of
calls. It only accepts a tree in which every dependency is a plain ``async def`` whose
parameters are other dependencies, the ``WebSocket`` (or ``HTTPConnection``) or the
``Response``. A tree with anything else returns ``None`` and is solved by FastAPI per
message: query, header, cookie or path parameters, ``yield`` dependencies (FastAPI
shields their cleanup), sync functions (FastAPI runs them in its thread pool),
classes and callable instances, ``Security`` scopes, ``BackgroundTasks``, a
concurrency limit. Dependency overrides are FastAPI's too: the caller skips the plan
while the app overrides any dependency.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final

from fastapi.dependencies.models import Dependant
from starlette.responses import Response
from starlette.websockets import WebSocket

__all__ = ["Plan", "plan_of"]

_WS: Final = 0
_RESPONSE: Final = 1
_FIRST_SLOT: Final = 2


@dataclass(frozen=True, slots=True)
class _Call:
    """One dependency called: ``call(**{name: slots[i] for name, i in arguments})``,
    its result stored in ``slots[slot]``."""

    call: Callable[..., Any]
    arguments: tuple[tuple[str, int], ...]
    slot: int


def _plain(dependant: Dependant) -> bool:
    """Whether ``dependant`` is an ``async def`` that needs nothing FastAPI reads per call."""
    call = dependant.call
    return (
        inspect.isfunction(call)
        and inspect.iscoroutinefunction(call)
        and not (
            dependant.path_params
            or dependant.query_params
            or dependant.header_params
            or dependant.cookie_params
            or dependant.body_params
            or dependant.request_param_name
            or dependant.background_tasks_param_name
            or dependant.security_scopes_param_name
            or dependant.own_oauth_scopes
            or dependant.parent_oauth_scopes
            or dependant.concurrency is not None
        )
    )


class _Builder:
    """FastAPI's walk of a tree, done once: which calls run, which the cache answers."""

    def __init__(self) -> None:
        self.calls: list[_Call] = []
        self.cached: dict[Hashable, int] = {}
        self.slots = _FIRST_SLOT

    def arguments(self, dependant: Dependant) -> tuple[tuple[str, int], ...] | None:
        """Where each of ``dependant``'s parameters comes from; ``None`` if unplannable."""
        found: list[tuple[str, int]] = []
        for sub in dependant.dependencies:
            slot = self.solve(sub)
            if slot is None:
                return None
            if sub.name is not None:
                found.append((sub.name, slot))
        for name in (dependant.websocket_param_name, dependant.http_connection_param_name):
            if name is not None:
                found.append((name, _WS))
        if dependant.response_param_name is not None:
            found.append((dependant.response_param_name, _RESPONSE))
        return tuple(found)

    def solve(self, dependant: Dependant) -> int | None:
        """The slot holding ``dependant``'s value once its calls ran; ``None`` if
        unplannable. As FastAPI: the sub-dependencies are solved first, even when the
        cache then answers for ``dependant`` itself, and the first value of a key stays
        the cached one."""
        if not _plain(dependant):
            return None
        arguments = self.arguments(dependant)
        if arguments is None:
            return None
        key = (dependant.call, dependant.scope or "")
        if dependant.use_cache and key in self.cached:
            return self.cached[key]
        assert dependant.call is not None  # checked by _plain
        slot = self.slots
        self.slots += 1
        self.calls.append(_Call(dependant.call, arguments, slot))
        self.cached.setdefault(key, slot)
        return slot


class Plan:
    """A handler's dependencies as calls in FastAPI's order (module docstring).

    Args:
        calls: the calls, in order.
        values: ``(parameter, slot)`` for each of the handler's dependency parameters.
        slots: how many slots a message uses.
    """

    __slots__ = ("_calls", "_slots", "_values", "leaves")

    def __init__(
        self, calls: tuple[_Call, ...], values: tuple[tuple[str, int], ...], slots: int
    ) -> None:
        self._calls = calls
        self._values = values
        self._slots = slots
        self.leaves: tuple[tuple[str, Callable[..., Any]], ...] | None = None
        """``(parameter, call)`` when every dependency is its own argument-less call, as
        with ``Depends(get_db)``: ``{parameter: await call()}`` in order is the plan."""
        by_slot = {step.slot: step for step in calls}
        if len(values) == len(calls) and all(
            slot in by_slot and not by_slot[slot].arguments for _, slot in values
        ):
            self.leaves = tuple((name, by_slot[slot].call) for name, slot in values)

    async def values(self, ws: WebSocket, response: Response) -> dict[str, Any]:
        """Call the dependencies for one message; the handler's dependency arguments.

        Raises:
            Exception: whatever a dependency raised (the calls after it do not run).
        """
        slots: list[Any] = [None] * self._slots
        slots[_WS] = ws
        slots[_RESPONSE] = response
        for step in self._calls:
            if step.arguments:
                slots[step.slot] = await step.call(**{n: slots[i] for n, i in step.arguments})
            else:
                slots[step.slot] = await step.call()
        return {name: slots[slot] for name, slot in self._values}


def plan_of(dependant: Dependant) -> Plan | None:
    """``dependant``'s tree as a `Plan`, or ``None`` when FastAPI must solve it per call."""
    builder = _Builder()
    values = builder.arguments(dependant)
    if values is None:
        return None
    return Plan(tuple(builder.calls), values, builder.slots)
