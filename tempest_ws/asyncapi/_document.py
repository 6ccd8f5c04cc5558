"""The AsyncAPI 3.0.0 document of one WebSocket endpoint, generated from its registry.

`asyncapi_document()` describes the endpoint from the server's side: one channel (the
endpoint's address, its handshake binding, security schemes and close codes:
[`tempest_ws.asyncapi._channel`][tempest_ws.asyncapi._channel]), a ``receive`` operation for every
message clients
send and a ``send`` operation for every message the server sends. Those are the
registry's messages and the router's own protocol
([`tempest_ws.asyncapi._protocol`][tempest_ws.asyncapi._protocol]):
``hello``, ``ping``, ``pong``, ``error``, ``ack``, ``resync``, ``recovery`` and
``auth.refresh`` always, the built-in operations the router enables (``subscribe``,
``unsubscribe``, ``presence.get``, ``typing``, ``receipt``) and the ``presence.join`` /
``presence.leave`` events of a hub that keeps presence. Every message the registry sends
may carry the optional top-level ``topic``/``offset``/``epoch`` keys of a topic that
keeps history (``docs/history.md``).

Schemas come from pydantic, translated for AsyncAPI's draft-07 based Schema Object
([`tempest_ws.asyncapi._schema`][tempest_ws.asyncapi._schema]); every model lands once in
``components/schemas``.

`add_asyncapi_route()` serves the document next to the endpoint, by default at
``{path}/asyncapi.json``, with the built-ins and presence read from the router.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode

from tempest_ws.asyncapi._channel import (
    COMPONENT_KEY,
    channel_description,
    close_codes,
    security_schemes,
    servers_object,
    ws_binding,
)
from tempest_ws.asyncapi._protocol import ProtocolMessage, protocol_messages
from tempest_ws.asyncapi._schema import envelope_payload, model_schemas
from tempest_ws.router._router import WebSocketRouter, _builtin_operations
from tempest_ws.settings import WebSocketSettings
from tempest_ws.wire.messages import MessageRegistry

__all__ = ["ASYNCAPI_VERSION", "CLOSE_CODES_EXTENSION", "add_asyncapi_route", "asyncapi_document"]

ASYNCAPI_VERSION: Final = "3.0.0"
"""The AsyncAPI specification version of the generated documents."""

CLOSE_CODES_EXTENSION: Final = "x-tempest-ws-close-codes"
"""The channel extension listing every close code the endpoint may send."""


# -- document ---------------------------------------------------------------------------


def _component_key(text: str, taken: set[str]) -> str:
    base = "".join(c if COMPONENT_KEY.fullmatch(c) else "_" for c in text) or "message"
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    taken.add(key)
    return key


def _channel_key(path: str) -> str:
    return _component_key(path.strip("/") or "root", set())


def asyncapi_document(
    messages: MessageRegistry | None = None,
    *,
    settings: WebSocketSettings,
    path: str = "/ws",
    title: str = "WebSocket API",
    version: str = "1.0.0",
    description: str | None = None,
    servers: Mapping[str, str] | None = None,
    channel_id: str | None = None,
    builtins: bool | Iterable[str] = False,
    presence: bool = False,
) -> dict[str, Any]:
    """Build the AsyncAPI 3.0.0 document of the endpoint at ``path``.

    The router's own protocol is always listed (``hello``, ``ping``, ``pong``,
    ``error``, ``ack``, ``resync``, ``recovery``, ``auth.refresh``); the built-in
    operations and presence events only when ``builtins`` / ``presence`` say the
    endpoint has them.

    Args:
        messages: the endpoint's typed messages; ``None`` documents only the router's own
            envelopes.
        settings: the endpoint's settings (query-token switch, heartbeat, size limit).
        path: the channel address, as clients reach it (include any prefix the router is
            mounted under).
        title: ``info.title``.
        version: ``info.version``: the version of *your* API.
        description: ``info.description``.
        servers: server name to ``ws://`` or ``wss://`` URL (``{"production":
            "wss://api.example.com"}``); none by default, since only the deployment knows.
        channel_id: key of the channel; derived from ``path`` by default (``/ws`` -> ``ws``).
        builtins: the router's ``builtins=`` (``True``: all of ``subscribe``,
            ``unsubscribe``, ``presence.get``, ``typing``, ``receipt``); each enabled one
            is a message the server receives, ``typing`` and ``receipt`` one it sends too.
        presence: the hub keeps presence (``presence=``): list the ``presence.join`` /
            ``presence.leave`` events it sends.

    Returns:
        A JSON-ready dict. Each call builds a new one.

    Raises:
        ConfigurationError: a server URL is not ``ws://``/``wss://`` or a name is invalid,
            or ``builtins`` names an unknown operation.
    """
    registrations = list(messages.registrations()) if messages is not None else []
    entries = protocol_messages(_builtin_names(builtins), presence=presence)
    entries += [
        ProtocolMessage(
            item.message_type,
            item.model,
            "receive" if item.direction == "inbound" else "send",
            item.summary or "",
        )
        for item in registrations
    ]
    modes = [(entry.model, _mode(entry)) for entry in entries]
    refs, schemas = model_schemas(list(dict.fromkeys(modes)))

    channel_key = channel_id or _channel_key(path)
    channel_ref = f"#/channels/{channel_key}"
    schemes = security_schemes(settings)
    security = [{"$ref": f"#/components/securitySchemes/{name}"} for name in schemes]

    stamped = {item.message_type for item in registrations if item.direction != "inbound"}
    message_keys: set[str] = set()
    operation_keys: set[str] = set()
    component_messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def add_message(
        message_type: str, data_ref: dict[str, Any], summary: str, model: type[BaseModel]
    ) -> str:
        key = _component_key(message_type, message_keys)
        message: dict[str, Any] = {
            "name": message_type,
            "title": model.model_config.get("title") or model.__name__,
            "contentType": "application/json",
            "payload": envelope_payload(message_type, data_ref, stamped=message_type in stamped),
            "correlationId": {"$ref": "#/components/correlationIds/requestId"},
        }
        if summary:
            message["summary"] = summary
        doc = (model.__doc__ or "").strip()
        if doc and doc != summary and model.__doc__ is not BaseModel.__doc__:
            message["description"] = doc
        component_messages[key] = message
        return key

    def add_operation(action: str, key: str, summary: str) -> None:
        operation: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": channel_ref},
            "messages": [{"$ref": f"{channel_ref}/messages/{key}"}],
            "security": security,
        }
        if summary:
            operation["summary"] = summary
        operations[_component_key(f"{action}.{key}", operation_keys)] = operation

    shared: dict[tuple[str, str], str] = {}
    for entry in entries:
        data_ref = refs[(entry.model, _mode(entry))]
        # The same type with the same schema both ways is one message used by two
        # operations; a type whose two directions differ gets two messages.
        identity = (entry.message_type, json.dumps(data_ref, sort_keys=True))
        key = shared.get(identity) or add_message(
            entry.message_type, data_ref, entry.summary, entry.model
        )
        shared[identity] = key
        add_operation(entry.action, key, entry.summary)

    channel: dict[str, Any] = {
        "address": path,
        "title": f"WebSocket {path}",
        "description": channel_description(settings),
        "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in component_messages},
        "bindings": {"ws": ws_binding(settings)},
        CLOSE_CODES_EXTENSION: close_codes(),
    }
    info: dict[str, Any] = {"title": title, "version": version}
    if description:
        info["description"] = description
    document: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": info,
        "defaultContentType": "application/json",
    }
    if servers:
        document["servers"] = servers_object(servers, security)
    document["channels"] = {channel_key: channel}
    document["operations"] = operations
    document["components"] = {
        "schemas": schemas,
        "messages": component_messages,
        "securitySchemes": schemes,
        "correlationIds": {
            "requestId": {
                "description": "The client's request_id, echoed on the reply.",
                "location": "$message.payload#/request_id",
            }
        },
    }
    return document


def _mode(entry: ProtocolMessage) -> JsonSchemaMode:
    return "validation" if entry.action == "receive" else "serialization"


def _builtin_names(builtins: bool | Iterable[str]) -> frozenset[str]:
    return _builtin_operations(builtins)  # the router's own check: the same errors


def add_asyncapi_route(
    router: APIRouter,
    messages: MessageRegistry | None = None,
    *,
    settings: WebSocketSettings,
    path: str = "/ws",
    doc_path: str | None = None,
    address: str | None = None,
    builtins: bool | Iterable[str] | None = None,
    presence: bool | None = None,
    **document_options: Any,
) -> None:
    """Serve `asyncapi_document()` on ``router`` (GET ``{path}/asyncapi.json``).

    Args:
        router: the router [`make_websocket_router()`][tempest_ws.make_websocket_router] returned
            (any
            ``APIRouter`` works).
        messages: the endpoint's registry; registrations made after this call still show
            up (the document is rebuilt when the registry changes).
        settings: the settings given to the router.
        path: the WebSocket route's path on ``router``.
        doc_path: where to serve the document; ``{path}/asyncapi.json`` by default.
        address: the channel address to publish. By default it is worked out per request
            from the URL the document was fetched at: whatever precedes ``doc_path``
            there (a mount point, an ``include_router`` prefix, a proxy's ``root_path``)
            precedes ``path`` too.
        builtins: the built-in operations to list; by default those ``router`` answers
            when it came from [`make_websocket_router()`][tempest_ws.make_websocket_router] (else
            none).
        presence: list the ``presence.join``/``presence.leave`` events; by default
            whether the hub of such a router keeps presence for any topic.
        **document_options: ``title``, ``version``, ``description``, ``servers``,
            ``channel_id``, passed to `asyncapi_document()`.

    The route is left out of the OpenAPI schema. The response is plain JSON with
    ``Cache-Control: no-cache``.
    """
    local_doc_path = doc_path or f"{path.rstrip('/')}/asyncapi.json"
    # The channel keeps the route's name wherever the router is mounted.
    document_options.setdefault("channel_id", _channel_key(path))
    endpoint = router._tempest_endpoint if isinstance(router, WebSocketRouter) else None
    if builtins is None:
        inbound = None if endpoint is None else endpoint.inbound
        builtins = frozenset() if inbound is None else inbound.operations
    if presence is None:
        presence = endpoint is not None and endpoint.hub.presence_enabled
    document_options.update(builtins=builtins, presence=presence)
    cache: dict[tuple[str, int], dict[str, Any]] = {}

    def build(channel_address: str) -> dict[str, Any]:
        revision = messages.revision if messages is not None else 0
        key = (channel_address, revision)
        document = cache.get(key)
        if document is None:
            cache.clear()
            document = asyncapi_document(
                messages, settings=settings, path=channel_address, **document_options
            )
            cache[key] = document
        return document

    # Fail at startup, not at the first request, for options the document rejects.
    build(address or path)

    async def asyncapi_json(request: Request) -> JSONResponse:
        channel_address = address or _address_from(request, local_doc_path, path)
        return JSONResponse(build(channel_address), headers={"Cache-Control": "no-cache"})

    asyncapi_json.__doc__ = "The AsyncAPI 3.0.0 document of this WebSocket endpoint."
    router.add_api_route(
        local_doc_path,
        asyncapi_json,
        methods=["GET"],
        include_in_schema=False,
        name="tempest_ws_asyncapi",
    )


def _address_from(request: Request, local_doc_path: str, path: str) -> str:
    # The ASGI "path" is what the client asked for, root_path and router prefixes
    # included; whatever precedes the document's own path precedes the endpoint's too.
    requested: str = request.scope.get("path", "")
    prefix = requested[: -len(local_doc_path)] if requested.endswith(local_doc_path) else ""
    return prefix + path
