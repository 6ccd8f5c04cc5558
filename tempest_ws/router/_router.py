"""``make_websocket_router``: one authenticated, heartbeated WebSocket route.

The route's endpoint ([`tempest_ws.router._endpoint`][tempest_ws.router._endpoint]) runs every
connection through
the
same path: origin check, per-address cap, token, accept, resolve, ``on_connect``,
register, ``hello``, then heartbeat, inbound guard (with the opt-in built-in operations
and typed validation), token expiry and the handler, and a cleanup that leaks nothing.
The router returned here is an ``APIRouter`` that can also
`drain()` that endpoint at shutdown (see [`tempest_ws.shutdown`][tempest_ws.router.shutdown]).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from importlib import resources
from typing import Any, TypeVar

from fastapi import APIRouter, FastAPI, HTTPException, Response, params
from fastapi.routing import APIWebSocketRoute

from tempest_ws._types import BearerResolver
from tempest_ws.exceptions import ConfigurationError
from tempest_ws.hub._authz import require_authorizer
from tempest_ws.hub._hub import WebSocketHub
from tempest_ws.observe.tracing import Tracing
from tempest_ws.router._endpoint import DRAIN_REASON, Endpoint
from tempest_ws.router._handler_socket import Handler
from tempest_ws.router._hooks import Hooks
from tempest_ws.router._inbound import Inbound
from tempest_ws.router._redaction import install_query_token_redaction
from tempest_ws.router._route import ROUTE_NAME, add_endpoint_route
from tempest_ws.router.events._dispatch import EventDispatch
from tempest_ws.router.events._handlers import EventCall, EventHandler, EventRegistry
from tempest_ws.router.events._setup import EventSetup
from tempest_ws.router.realtime import BUILTIN_OPERATIONS, OnConnect, OnDisconnect, TopicAuthorizer
from tempest_ws.settings import WebSocketSettings
from tempest_ws.wire.codes import CloseCode
from tempest_ws.wire.envelope import SUBSCRIBE
from tempest_ws.wire.messages import MessageRegistry

__all__ = ["DRAIN_REASON", "WebSocketRouter", "make_websocket_router"]

CallT = TypeVar("CallT", bound=EventCall)
ConnectT = TypeVar("ConnectT", bound=OnConnect)
DisconnectT = TypeVar("DisconnectT", bound=OnDisconnect)


class WebSocketRouter(APIRouter):
    """The ``APIRouter`` `make_websocket_router()` returns, able to drain its endpoint.

    Include it with ``app.include_router`` as any router. Its `drain()` is what
    [`tempest_ws.shutdown`][tempest_ws.router.shutdown] calls before uvicorn closes every socket
    with 1012.
    """

    def __init__(self, endpoint: Endpoint, events: EventSetup, **options: Any) -> None:
        super().__init__(**options)
        self._tempest_endpoint = endpoint
        self._tempest_events = events

    @property
    def hub(self) -> WebSocketHub:
        """The hub this router's connections are registered with."""
        return self._tempest_endpoint.hub

    @property
    def builtin_operations(self) -> frozenset[str]:
        """The envelope types this router answers itself (``builtins=``); empty without."""
        inbound = self._tempest_endpoint.inbound
        return frozenset() if inbound is None else inbound.operations

    @property
    def event_handlers(self) -> tuple[EventHandler, ...]:
        """The handlers registered with `on()`, in registration order (for AsyncAPI)."""
        return tuple(self._tempest_events.dispatch.registry)

    def on(
        self, message_type: str, *, concurrent: bool = False, errors: Iterable[str] = ()
    ) -> Callable[[CallT], CallT]:
        """Register the decorated ``async def`` as the handler of ``message_type``.

        Its parameters say what it receives: a pydantic model (``data``, validated; a
        failure answers ``invalid_data`` and never reaches it), a ``WebSocketConnection``,
        ``WebSocketHub``, ``WebSocket`` or ``WSEnvelope`` (by type), and FastAPI
        dependencies (``Depends``, solved per message; ``yield`` ones clean up after it).
        What it returns answers the caller as ``<message_type>.reply`` (``None``: an
        ``ack`` when the request had a ``request_id``, else nothing; a ``WSEnvelope``:
        that envelope, with the request's ``request_id`` when it has none); a raised
        ``WebSocketError`` answers an ``error`` envelope, any other exception an
        ``internal_error`` one (logged): the connection stays open. See ``docs/events.md``.

        Args:
            message_type: the envelope ``type``.
            concurrent: run beside the connection's other messages (at most
                ``WS_MAX_CONCURRENT_HANDLERS`` at once) instead of in arrival order.
            errors: the ``WebSocketError`` codes it may answer, for the AsyncAPI document.

        Raises:
            ConfigurationError: a parameter it cannot fill, a type that is reserved, a
                built-in, registered in ``messages``, or already has a handler.
        """
        return self._tempest_events.on(message_type, concurrent=concurrent, errors=errors)

    def on_connect(self, hook: ConnectT) -> ConnectT:
        """Register ``hook`` as the ``on_connect`` hook (same as the ``on_connect=`` argument).

        Raises:
            ConfigurationError: the router already has one.
        """
        return self._tempest_events.on_connect(hook)

    def on_disconnect(self, hook: DisconnectT) -> DisconnectT:
        """Add ``hook`` to the ``on_disconnect`` hooks (run after those given as arguments)."""
        return self._tempest_events.on_disconnect(hook)

    @property
    def draining(self) -> bool:
        """True once `drain()` started: new connections are closed 1001 on accept."""
        return self._tempest_endpoint.draining

    @property
    def handshakes_in_progress(self) -> int:
        """Handshakes this router's endpoint is working on right now (up to registration)."""
        return self._tempest_endpoint.admission.pending

    @property
    def handshakes_shed(self) -> int:
        """Handshakes refused with HTTP 503 because ``WS_MAX_PENDING_HANDSHAKES`` were in
        progress (this process, since the router was made)."""
        return self._tempest_endpoint.admission.shed

    def connection_count(self) -> int:
        """Connections this router's endpoint is serving right now (this process)."""
        return len(self._tempest_endpoint.live)

    async def drain(
        self,
        *,
        reason: str = DRAIN_REASON,
        grace: float = 10.0,
        code: int = CloseCode.GOING_AWAY,
    ) -> int:
        """Close every connection with ``code`` (1001) and ``reason``; refuse new ones.

        Each connection first flushes the frames already queued for it (as any 1001
        close does), then its session ends as usual: handler, heartbeat and registry
        entry are cleaned up. Handshakes arriving from now on are accepted and closed
        1001 at once, so clients reconnect elsewhere. Returns once every session has
        ended or ``grace`` seconds passed; connections still open then are aborted.
        Calling it again closes what opened in between (normally nothing).

        Returns:
            How many connections were asked to close.
        """
        return await self._tempest_endpoint.drain(code=code, reason=reason, grace=grace)

    def install(
        self,
        app: FastAPI,
        *,
        prefix: str = "",
        dependencies: Sequence[params.Depends] | None = None,
    ) -> None:
        """``app.include_router(router, prefix=, dependencies=)``, with the WebSocket route
        registered on ``app`` itself, as ``@app.websocket`` would register it.

        FastAPI runs a route of an included router through three more coroutine frames
        (the included router's dispatch), and for a WebSocket they stay suspended for the
        life of the connection: about 1.1 KB per idle connection. Installed, the WebSocket
        route skips them. The rest is as ``include_router`` does it: the lifespan (the
        hub's start and stop), the browser client's files, ``url_path_for``, and the
        dependencies in the same order (the app's, ``dependencies``, the router's own).

        Raises:
            ConfigurationError: ``prefix`` does not start with ``/`` or ends with one.
        """
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            raise ConfigurationError("a prefix starts with '/' and does not end with one")
        route = next(
            r for r in self.routes if isinstance(r, APIWebSocketRoute) and r.name == ROUTE_NAME
        )
        add_endpoint_route(
            app.router,
            prefix + route.path,
            self._tempest_endpoint,
            dependencies=[*(dependencies or ()), *route.dependencies],
        )
        # Matched first, the route above shadows the router's own copy of it.
        app.include_router(self, prefix=prefix, dependencies=dependencies)


def make_websocket_router(
    handler: Handler | None = None,
    *,
    hub: WebSocketHub,
    bearer_resolver: BearerResolver,
    settings: WebSocketSettings,
    path: str = "/ws",
    max_invalid_frames: int = 10,
    redact_query_tokens: bool = True,
    serve_client: bool = True,
    builtins: bool | Iterable[str] = False,
    messages: MessageRegistry | None = None,
    topic_authorizer: TopicAuthorizer | None = None,
    on_connect: OnConnect | None = None,
    on_disconnect: OnDisconnect | Sequence[OnDisconnect] = (),
    hook_timeout: float = 10.0,
    tracing: Tracing | None = None,
    dependencies: Sequence[params.Depends] | None = None,
) -> WebSocketRouter:
    """Build an ``APIRouter`` with an authenticated, heartbeated WebSocket at ``path``.

    Args:
        handler: ``async (ws, connection, hub)`` awaited once per authenticated
            connection, or ``None`` when every message goes to an event handler
            (`WebSocketRouter.on`; a type without one is answered ``unknown_type``).
            With both, a type with an event handler goes to it and any other type to
            ``handler``. ``ws.receive*`` never returns heartbeat envelopes, ``auth.refresh``
            envelopes, oversized or malformed frames; a ``WebSocketDisconnect`` ends it
            normally and any other exception closes 1011 (logged with the connection id).
        hub: the hub connections are registered with; started and stopped by the
            router's lifespan (and stopped connections are closed 1001).
        bearer_resolver: ``async (token) -> user id | None``; called again for every
            ``auth.refresh``.
        settings: the ``WS_*`` configuration.
        path: the route path.
        max_invalid_frames: malformed frames (each answered with an error envelope)
            tolerated per connection before it is closed 1008.
        redact_query_tokens: hide ``?token=`` values in uvicorn's logs.
        serve_client: also serve the browser client: as one file at ``{path}/client.js``
            and as the ES modules it is built from under ``{path}/client/``.
        builtins: answer these envelope types in the router, each with an ``ack`` or
            ``error`` carrying the request's ``request_id`` (``True``: all of
            ``subscribe``, ``unsubscribe``, ``presence.get``, ``typing``, ``receipt``);
            the handler never sees them. With ``subscribe``, the URL's ``?topics=a,b``
            are subscribed before the handler starts. See ``docs/realtime.md``.
        messages: a registry every other inbound envelope must match: an unregistered
            type or invalid ``data`` gets an ``unknown_type`` / ``invalid_data`` error
            (counted toward ``max_invalid_frames``), and the handler gets the validated
            model through [`receive_envelope()`][tempest_ws.router.realtime.receive_envelope].
        topic_authorizer: installed on ``hub`` (same as ``WebSocketHub(topic_authorizer=)``).
            Topics are closed by default: with the built-in ``subscribe``, or a hub that
            keeps presence or history, one is required (here or on the hub);
            [`allow_any_topic()`][tempest_ws.router.realtime.allow_any_topic] is the explicit
            allow-all.
        on_connect: ``(connection, ws)`` before registration; may refuse with a close
            code (``False``: 4403). See [`OnConnect`][tempest_ws.router.realtime.OnConnect].
        on_disconnect: one or several ``(connection)`` hooks run after the close.
        hook_timeout: seconds each hook may take (then it counts as failed).
        tracing: an OpenTelemetry span per inbound message (see ``docs/tracing.md``);
            the hub's ``tracing`` by default. Off when both are ``None``.
        dependencies: FastAPI ``Depends(...)`` for the WebSocket route only, solved
            after the app's (``FastAPI(dependencies=)``) and those of
            ``app.include_router(router, dependencies=)``, which apply as well. All of
            them run before the handshake is accepted; one that raises refuses it
            (``WebSocketException``: HTTP 403; ``HTTPException``: its status) and the
            endpoint never runs. See ``docs/authentication.md``.

    Returns:
        A `WebSocketRouter` (an ``APIRouter``) to pass to ``app.include_router``;
        keep it to `drain()` at shutdown.

    Raises:
        ConfigurationError: an unknown built-in name, a built-in type also registered in
            ``messages``, a hub that already has another topic authorizer, no topic
            authorizer where one is required (see ``topic_authorizer``), or a
            ``hook_timeout`` that is not positive.
    """
    operations = _builtin_operations(builtins)
    if messages is not None:
        clash = sorted(t for t in operations if messages.accepts(t))
        if clash:
            raise ConfigurationError(f"built-in operations also registered inbound: {clash}")
    if topic_authorizer is not None:
        if hub.topic_authorizer not in (None, topic_authorizer):
            raise ConfigurationError("the hub already has another topic_authorizer")
        hub.topic_authorizer = topic_authorizer
    if SUBSCRIBE in operations:
        because = "the built-in subscribe (and ?topics=) lets clients choose topics"
        require_authorizer(hub.topic_authorizer, because=because)
    hub.check_authorizer()  # presence or history: refused now rather than at startup
    if hook_timeout <= 0:
        raise ConfigurationError("hook_timeout must be positive")
    disconnect_hooks = [on_disconnect] if callable(on_disconnect) else list(on_disconnect)
    hooks = Hooks(on_connect, disconnect_hooks, timeout=hook_timeout)
    registry = EventRegistry(
        lambda t: t in operations or (messages is not None and messages.accepts(t))
    )
    limit = settings.WS_MAX_CONCURRENT_HANDLERS
    dispatch = EventDispatch(registry, hub=hub, classic=handler, limit=limit)
    with_events = Inbound(hub, operations=operations, messages=messages, events=dispatch)
    inbound = with_events if handler is None else None
    if inbound is None and (operations or messages is not None):
        inbound = Inbound(hub, operations=operations, messages=messages)
    if redact_query_tokens:
        install_query_token_redaction()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await hub.start()
        try:
            yield {}
        finally:
            await hub.stop()

    endpoint = Endpoint(
        handler if handler is not None else dispatch.handle,
        hub=hub,
        bearer_resolver=bearer_resolver,
        settings=settings,
        max_invalid_frames=max_invalid_frames,
        inbound=inbound,
        hooks=hooks,
        tracing=tracing if tracing is not None else hub.tracing,
    )
    events = EventSetup(
        endpoint,
        dispatch,
        inbound=with_events,
        hooks=hooks,
    )
    router = WebSocketRouter(endpoint, events, lifespan=lifespan)
    add_endpoint_route(router, path, endpoint, dependencies=dependencies)
    if serve_client:
        router.add_api_route(
            f"{path.rstrip('/')}/client.js",
            _client_script_response,
            methods=["GET"],
            include_in_schema=False,
            name="tempest_ws_client_js",
        )
        router.add_api_route(
            f"{path.rstrip('/')}/client/{{module}}",
            _client_module_response,
            methods=["GET"],
            include_in_schema=False,
            name="tempest_ws_client_module",
        )
    return router


def _builtin_operations(builtins: bool | Iterable[str]) -> frozenset[str]:
    if builtins is True:
        return BUILTIN_OPERATIONS
    if builtins is False:
        return frozenset()
    if isinstance(builtins, str):
        raise ConfigurationError("builtins takes True, False or a collection of names")
    chosen = frozenset(builtins)
    unknown = sorted(chosen - BUILTIN_OPERATIONS)
    if unknown:
        raise ConfigurationError(
            f"unknown built-in operations {unknown}; choose from {sorted(BUILTIN_OPERATIONS)}"
        )
    return chosen


def _client_script_response() -> Response:
    """The browser client as one file, ``tempest-ws.js``, served from the installed package."""
    return _script(resources.files("tempest_ws").joinpath("static/tempest-ws.js").read_bytes())


def _client_module_response(module: str) -> Response:
    """One ES module of the browser client, from ``static/client/``; 404 for any other name."""
    source = resources.files("tempest_ws").joinpath("static/client", module)
    if not _CLIENT_MODULE.fullmatch(module) or not source.is_file():
        raise HTTPException(status_code=404)
    return _script(source.read_bytes())


_CLIENT_MODULE = re.compile(r"[a-z][a-z-]*\.js")


def _script(source: bytes) -> Response:
    return Response(
        source,
        media_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )
