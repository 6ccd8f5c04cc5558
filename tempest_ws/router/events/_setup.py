"""The decorators of a `WebSocketRouter`: ``on``, ``on_connect`` and ``on_disconnect``.

A router made with a classic ``handler`` and no event handler runs exactly as before:
its endpoint gets no event dispatch, so its read loop does no extra work per frame. The
first ``@router.on`` switches the endpoint to the
[`EventDispatch`][tempest_ws.router.events._dispatch.EventDispatch] (which runs the
classic handler beside the event handlers) for the connections opened from then on.
Register handlers at import time, before the app serves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

from tempest_ws.router._endpoint import Endpoint
from tempest_ws.router._hooks import Hooks
from tempest_ws.router._inbound import Inbound
from tempest_ws.router.events._dispatch import EventDispatch
from tempest_ws.router.events._handlers import EventCall, read_handler
from tempest_ws.router.realtime import OnConnect, OnDisconnect

__all__ = ["EventSetup"]

CallT = TypeVar("CallT", bound=EventCall)
ConnectT = TypeVar("ConnectT", bound=OnConnect)
DisconnectT = TypeVar("DisconnectT", bound=OnDisconnect)


class EventSetup:
    """What the router's decorators change on its endpoint.

    Args:
        endpoint: the router's endpoint.
        dispatch: the router's event dispatch (its registry receives the handlers).
        inbound: the endpoint's ``Inbound`` once event handlers exist (with ``dispatch``).
        hooks: the router's lifecycle hooks, shared with its endpoint.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        dispatch: EventDispatch,
        *,
        inbound: Inbound,
        hooks: Hooks,
    ) -> None:
        self.endpoint = endpoint
        self.dispatch = dispatch
        self.inbound = inbound
        self.hooks = hooks
        self.enabled = dispatch.classic is None

    def on(
        self, message_type: str, *, concurrent: bool = False, errors: Iterable[str] = ()
    ) -> Callable[[CallT], CallT]:
        """The decorator behind `WebSocketRouter.on`."""

        def register(call: CallT) -> CallT:
            handler = read_handler(message_type, call, concurrent=concurrent, errors=errors)
            self.dispatch.registry.add(handler)
            if not self.enabled:
                self.enabled = True
                self.endpoint.inbound = self.inbound
                self.endpoint.handler = self.dispatch.handle
            return call

        return register

    def on_connect(self, hook: ConnectT) -> ConnectT:
        """The decorator behind `WebSocketRouter.on_connect`.

        Raises:
            ConfigurationError: the router already has an ``on_connect`` hook.
        """
        self.hooks.set_connect(hook)
        return hook

    def on_disconnect(self, hook: DisconnectT) -> DisconnectT:
        """The decorator behind `WebSocketRouter.on_disconnect`."""
        self.hooks.add_disconnect(hook)
        return hook
