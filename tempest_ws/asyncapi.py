"""The AsyncAPI 3.0.0 document of one WebSocket endpoint, generated from its registry.

:func:`asyncapi_document` describes the endpoint from the server's side: one channel (the
endpoint's address, with the WebSockets binding: the ``bearer`` subprotocol and
``Authorization`` headers, and the ``token`` query parameter when
``WS_ALLOW_QUERY_TOKEN`` is on), a ``receive`` operation for every message clients send
and a ``send`` operation for every message the server sends, the router's own envelopes
(``hello``, ``ping``, ``pong``, ``error``, ``resync``, ``recovery``), the security
schemes, and every close code in an ``x-tempest-ws-close-codes`` extension and in the
channel description. Every message the server sends may carry the optional top-level
``topic``/``offset``/``epoch`` keys of a topic that keeps history (``docs/history.md``).

Schemas come from pydantic (``model_json_schema``). Every model and nested model lands
once in ``components/schemas``; ``$defs`` are hoisted and references rewritten, and the
few JSON Schema 2020-12 keywords pydantic emits that AsyncAPI's draft-07 based Schema
Object reads differently (``prefixItems``, an object ``discriminator``) are translated.

:func:`add_asyncapi_route` serves the document next to the endpoint, by default at
``{path}/asyncapi.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from .auth import BEARER_SUBPROTOCOL
from .codes import CLOSE_CODE_INFO
from .envelope import ERROR, HELLO, MAX_REQUEST_ID_LENGTH, PING, PONG, RECOVERY, RESYNC
from .exceptions import ConfigurationError
from .messages import MessageRegistry
from .settings import WebSocketSettings

__all__ = ["ASYNCAPI_VERSION", "CLOSE_CODES_EXTENSION", "add_asyncapi_route", "asyncapi_document"]

ASYNCAPI_VERSION: Final = "3.0.0"
"""The AsyncAPI specification version of the generated documents."""

CLOSE_CODES_EXTENSION: Final = "x-tempest-ws-close-codes"
"""The channel extension listing every close code the endpoint may send."""

_REF_TEMPLATE = "#/components/schemas/{model}"
_COMPONENT_KEY = re.compile(r"[\w.\-]+")
_WS_BINDING_VERSION = "0.1.0"


# -- the router's own envelopes ---------------------------------------------------------


class HelloData(BaseModel):
    """First frame on every accepted connection: its id and the server's cadence."""

    connection_id: str = Field(description="The id the hub and every server log record use.")
    heartbeat_seconds: float = Field(description="Seconds between ping envelopes.")
    heartbeat_timeout_seconds: float = Field(
        description="Silence after which the server closes 4408; any inbound frame counts."
    )
    max_message_bytes: int = Field(description="Largest inbound frame; larger ones close 1009.")


class HeartbeatData(BaseModel):
    """Empty: a ``ping`` or ``pong`` carries nothing but its optional ``request_id``."""

    model_config = ConfigDict(extra="allow")


class ErrorData(BaseModel):
    """Why an inbound frame was rejected; the frame itself was dropped."""

    code: str = Field(
        description="Machine-readable: invalid_json, invalid_envelope, binary_not_supported, "
        "unknown_type, invalid_data, or an application code."
    )
    message: str = Field(description="Human-readable; names fields, never repeats the payload.")


class ResyncData(BaseModel):
    """The server may have dropped messages (a backplane outage): reload state."""

    model_config = ConfigDict(extra="allow")


class RecoveryData(BaseModel):
    """Answer to a ``subscribe`` on a topic that keeps history, after the replayed
    messages; also sent alone (``recovered: false``) when live messages were lost."""

    topic: str = Field(description="The topic.")
    recovered: bool = Field(
        description="True: every message after the client's position was replayed. False: "
        "reload the topic's state from the source of truth, then continue from offset/epoch."
    )
    replayed: int = Field(description="How many stamped messages preceded this envelope.")
    offset: int = Field(description="Offset of the position to continue from.")
    epoch: str = Field(
        description="Epoch of that position (empty when the server knew no position)."
    )


_BUILTINS: Final = (
    # (type, model, server sends it, server receives it, summary)
    (HELLO, HelloData, True, False, "First frame of every connection."),
    (PING, HeartbeatData, True, True, "Heartbeat. The server pings; a client may ping too."),
    (PONG, HeartbeatData, True, True, "Answer to a ping, echoing its request_id."),
    (ERROR, ErrorData, True, False, "An inbound frame was rejected."),
    (RESYNC, ResyncData, True, False, "Messages may have been lost; reload state."),
    (RECOVERY, RecoveryData, True, False, "End of a history replay, or a gap: recovered?"),
)


# -- schema translation -----------------------------------------------------------------

_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SCHEMA_VALUES = (
    "additionalProperties",
    "additionalItems",
    "items",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "unevaluatedProperties",
)


def _draft07(schema: Any) -> Any:
    """Return a copy of a pydantic JSON schema that AsyncAPI's Schema Object reads right."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            out[key] = {name: _draft07(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            out[key] = [_draft07(sub) for sub in value]
        elif key in _SCHEMA_VALUES:
            out[key] = [_draft07(s) for s in value] if isinstance(value, list) else _draft07(value)
        else:
            out[key] = value  # keywords whose values are data (const, default, examples...)
    discriminator = out.get("discriminator")
    if isinstance(discriminator, dict):
        # OpenAPI's {"propertyName": ...}; AsyncAPI's discriminator is the name itself.
        out["discriminator"] = discriminator.get("propertyName", "")
        if not out["discriminator"]:
            del out["discriminator"]
    if "prefixItems" in out:
        # 2020-12 tuples; draft-07 says the same with an items array + additionalItems.
        rest = out.pop("items", None)
        out["items"] = out.pop("prefixItems")
        if rest is not None:
            out["additionalItems"] = rest
    return out


def _model_schemas(
    models: list[tuple[type[BaseModel], JsonSchemaMode]],
) -> tuple[dict[tuple[type[Any], JsonSchemaMode], Any], dict[str, Any]]:
    """One schema reference per (model, mode) and the shared ``components/schemas``."""
    refs, top = models_json_schema(models, ref_template=_REF_TEMPLATE)
    definitions = {name: _draft07(schema) for name, schema in top.get("$defs", {}).items()}
    return {key: _draft07(ref) for key, ref in refs.items()}, definitions


# -- document ---------------------------------------------------------------------------


def _component_key(text: str, taken: set[str]) -> str:
    base = "".join(c if _COMPONENT_KEY.fullmatch(c) else "_" for c in text) or "message"
    key, n = base, 2
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    taken.add(key)
    return key


def _channel_key(path: str) -> str:
    return _component_key(path.strip("/") or "root", set())


_STAMPED: Final = {
    "topic": {
        "type": "string",
        "description": "On messages of a topic that keeps history: the topic.",
    },
    "offset": {
        "type": "integer",
        "minimum": 1,
        "description": "On messages of a topic that keeps history: the message's offset "
        "(store it, with epoch, and send both in the next subscribe to resume).",
    },
    "epoch": {
        "type": "string",
        "description": "On messages of a topic that keeps history: the offset's epoch.",
    },
}


def _envelope_payload(
    message_type: str, data_schema: dict[str, Any], *, stamped: bool = False
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "type": {"type": "string", "const": message_type},
        "data": data_schema,
        "request_id": {
            "type": ["string", "null"],
            "maxLength": MAX_REQUEST_ID_LENGTH,
            "description": "Correlates a reply with its request; null when unused.",
        },
    }
    if stamped:
        properties.update(_STAMPED)
    return {"type": "object", "required": ["type", "data"], "properties": properties}


def _servers(servers: Mapping[str, str], security: list[dict[str, str]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, url in servers.items():
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ConfigurationError(f"server {name!r} needs a ws:// or wss:// URL, not {url!r}")
        if not _COMPONENT_KEY.fullmatch(name):
            raise ConfigurationError(f"server name {name!r} may use letters, digits, . - _")
        server: dict[str, Any] = {
            "host": parts.netloc,
            "protocol": parts.scheme,
            "security": security,
        }
        if parts.path not in ("", "/"):
            server["pathname"] = parts.path.rstrip("/")
        out[name] = server
    return out


def _close_codes() -> list[dict[str, Any]]:
    return [
        {
            "code": int(code),
            "name": code.name,
            "meaning": info.meaning,
            "client_action": info.client_action,
            "reconnect": info.reconnect,
        }
        for code, info in CLOSE_CODE_INFO.items()
    ]


def _channel_description(settings: WebSocketSettings) -> str:
    query = (
        ", or the `token` query parameter"
        if settings.WS_ALLOW_QUERY_TOKEN
        else " (the `token` query parameter is turned off)"
    )
    rows = "\n".join(
        f"| {int(code)} | `{code.name}` | {info.meaning} | {info.client_action} |"
        for code, info in CLOSE_CODE_INFO.items()
    )
    return (
        "One WebSocket connection per client. Every frame is a JSON envelope "
        '`{"type": str, "data": any, "request_id": str | null}`.\n\n'
        "**Authentication.** Offer the subprotocols `bearer, <token>` "
        "(`new WebSocket(url, ['bearer', token])`; the server selects `bearer` and never "
        f"echoes the token), or send `Authorization: Bearer <token>`{query}. A missing or "
        "rejected token closes 4401 after the handshake.\n\n"
        f"**Heartbeat.** The server sends `ping` every {settings.WS_HEARTBEAT_SECONDS:g} s "
        f"and closes 4408 after {settings.WS_HEARTBEAT_TIMEOUT_SECONDS:g} s without any "
        "inbound frame; answer each `ping` with a `pong`.\n\n"
        f"**Limits.** Frames over {settings.WS_MAX_MESSAGE_BYTES} bytes close 1009; "
        "malformed frames get an `error` envelope.\n\n"
        "**Close codes** (also in the `x-tempest-ws-close-codes` extension):\n\n"
        "| Code | Name | Meaning | Client should |\n|---|---|---|---|\n" + rows
    )


def _ws_binding(settings: WebSocketSettings) -> dict[str, Any]:
    headers: dict[str, Any] = {
        "type": "object",
        "properties": {
            "Sec-WebSocket-Protocol": {
                "type": "string",
                "description": f"`{BEARER_SUBPROTOCOL}, <token>`: the entry after "
                f"`{BEARER_SUBPROTOCOL}` is the token (preferred: browsers can set it). "
                f"The server selects `{BEARER_SUBPROTOCOL}`.",
            },
            "Authorization": {
                "type": "string",
                "pattern": "^[Bb][Ee][Aa][Rr][Ee][Rr] .+",
                "description": "`Bearer <token>`, for clients that can set headers.",
            },
            "Origin": {
                "type": "string",
                "description": "Checked against WS_ALLOWED_ORIGINS when that list is set; "
                "a refused origin gets HTTP 403 before the handshake completes.",
            },
        },
    }
    binding: dict[str, Any] = {"method": "GET", "headers": headers}
    if settings.WS_ALLOW_QUERY_TOKEN:
        binding["query"] = {
            "type": "object",
            "properties": {
                "token": {
                    "type": "string",
                    "description": "The token, when neither the subprotocol nor the "
                    "Authorization header carries one. It can end up in proxy logs and "
                    "browser history; prefer the subprotocol.",
                }
            },
        }
    binding["bindingVersion"] = _WS_BINDING_VERSION
    return binding


def _security_schemes(settings: WebSocketSettings) -> dict[str, Any]:
    schemes: dict[str, Any] = {
        "bearerSubprotocol": {
            "type": "httpApiKey",
            "in": "header",
            "name": "Sec-WebSocket-Protocol",
            "description": f"Subprotocols `{BEARER_SUBPROTOCOL}, <token>`; the server "
            f"answers with `{BEARER_SUBPROTOCOL}` only.",
        },
        "bearerHeader": {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <token>` on the handshake request.",
        },
    }
    if settings.WS_ALLOW_QUERY_TOKEN:
        schemes["queryToken"] = {
            "type": "httpApiKey",
            "in": "query",
            "name": "token",
            "description": "`?token=<token>` (WS_ALLOW_QUERY_TOKEN); redacted from the "
            "server's access logs.",
        }
    return schemes


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
) -> dict[str, Any]:
    """Build the AsyncAPI 3.0.0 document of the endpoint at ``path``.

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

    Returns:
        A JSON-ready dict. Each call builds a new one.

    Raises:
        ConfigurationError: a server URL is not ``ws://``/``wss://`` or a name is invalid.
    """
    registrations = list(messages.registrations()) if messages is not None else []
    modes: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for _type, model, *_rest in _BUILTINS:
        modes.append((model, "serialization"))
    for item in registrations:
        mode: JsonSchemaMode = "validation" if item.direction == "inbound" else "serialization"
        modes.append((item.model, mode))
    refs, schemas = _model_schemas(list(dict.fromkeys(modes)))

    channel_key = channel_id or _channel_key(path)
    channel_ref = f"#/channels/{channel_key}"
    security_schemes = _security_schemes(settings)
    security = [{"$ref": f"#/components/securitySchemes/{name}"} for name in security_schemes]

    sent_types = {item.message_type for item in registrations if item.direction != "inbound"}
    message_keys: set[str] = set()
    operation_keys: set[str] = set()
    component_messages: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def add_message(
        message_type: str, data_ref: dict[str, Any], summary: str | None, model: type[BaseModel]
    ) -> str:
        key = _component_key(message_type, message_keys)
        message: dict[str, Any] = {
            "name": message_type,
            "title": model.model_config.get("title") or model.__name__,
            "contentType": "application/json",
            "payload": _envelope_payload(
                message_type, data_ref, stamped=message_type in sent_types
            ),
            "correlationId": {"$ref": "#/components/correlationIds/requestId"},
        }
        if summary:
            message["summary"] = summary
        doc = (model.__doc__ or "").strip()
        if doc and doc != summary and model.__doc__ is not BaseModel.__doc__:
            message["description"] = doc
        component_messages[key] = message
        return key

    def add_operation(action: str, key: str, summary: str | None) -> None:
        operation: dict[str, Any] = {
            "action": action,
            "channel": {"$ref": channel_ref},
            "messages": [{"$ref": f"{channel_ref}/messages/{key}"}],
            "security": security,
        }
        if summary:
            operation["summary"] = summary
        operations[_component_key(f"{action}.{key}", operation_keys)] = operation

    for message_type, model, sent, received, summary in _BUILTINS:
        key = add_message(message_type, refs[(model, "serialization")], summary, model)
        if received:
            add_operation("receive", key, summary)
        if sent:
            add_operation("send", key, summary)

    shared: dict[tuple[str, str], str] = {}
    for item in registrations:
        mode = "validation" if item.direction == "inbound" else "serialization"
        data_ref = refs[(item.model, mode)]
        # The same type with the same schema both ways is one message used by two
        # operations; a type whose two directions differ gets two messages.
        identity = (item.message_type, json.dumps(data_ref, sort_keys=True))
        key = shared.get(identity) or add_message(
            item.message_type, data_ref, item.summary, item.model
        )
        shared[identity] = key
        add_operation("receive" if item.direction == "inbound" else "send", key, item.summary)

    channel: dict[str, Any] = {
        "address": path,
        "title": f"WebSocket {path}",
        "description": _channel_description(settings),
        "messages": {key: {"$ref": f"#/components/messages/{key}"} for key in component_messages},
        "bindings": {"ws": _ws_binding(settings)},
        CLOSE_CODES_EXTENSION: _close_codes(),
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
        document["servers"] = _servers(servers, security)
    document["channels"] = {channel_key: channel}
    document["operations"] = operations
    document["components"] = {
        "schemas": schemas,
        "messages": component_messages,
        "securitySchemes": security_schemes,
        "correlationIds": {
            "requestId": {
                "description": "The client's request_id, echoed on the reply.",
                "location": "$message.payload#/request_id",
            }
        },
    }
    return document


def add_asyncapi_route(
    router: APIRouter,
    messages: MessageRegistry | None = None,
    *,
    settings: WebSocketSettings,
    path: str = "/ws",
    doc_path: str | None = None,
    address: str | None = None,
    **document_options: Any,
) -> None:
    """Serve :func:`asyncapi_document` on ``router`` (GET ``{path}/asyncapi.json``).

    Args:
        router: the router :func:`~tempest_ws.make_websocket_router` returned (any
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
        **document_options: ``title``, ``version``, ``description``, ``servers``,
            ``channel_id``, passed to :func:`asyncapi_document`.

    The route is left out of the OpenAPI schema. The response is plain JSON with
    ``Cache-Control: no-cache``.
    """
    local_doc_path = doc_path or f"{path.rstrip('/')}/asyncapi.json"
    # The channel keeps the route's name wherever the router is mounted.
    document_options.setdefault("channel_id", _channel_key(path))
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
