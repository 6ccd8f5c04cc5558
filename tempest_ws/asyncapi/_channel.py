"""The channel part of the AsyncAPI document: handshake binding, security, servers.

What [`tempest_ws.asyncapi.asyncapi_document()`][tempest_ws.asyncapi._document.asyncapi_document]
says about
*connecting*, from the
endpoint's settings: the WebSockets binding (``bearer`` subprotocol, ``Authorization``
and ``Origin`` headers, the ``token`` query parameter when ``WS_ALLOW_QUERY_TOKEN`` is
on), the matching security schemes, the ``servers`` object, and the channel description
with the heartbeat cadence, the size limit and the close-code table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from tempest_ws.exceptions import ConfigurationError
from tempest_ws.router.auth import BEARER_SUBPROTOCOL
from tempest_ws.settings import WebSocketSettings
from tempest_ws.wire.codes import CLOSE_CODE_INFO, CloseCode

__all__ = [
    "COMPONENT_KEY",
    "channel_description",
    "close_codes",
    "security_schemes",
    "servers_object",
    "ws_binding",
]

COMPONENT_KEY = re.compile(r"[\w.\-]+")
"""What a component or server name may consist of."""

_WS_BINDING_VERSION = "0.1.0"


def servers_object(servers: Mapping[str, str], security: list[dict[str, str]]) -> dict[str, Any]:
    """The ``servers`` object: one entry per ``ws://``/``wss://`` URL.

    Raises:
        ConfigurationError: a URL is not ``ws://``/``wss://`` or a name is invalid.
    """
    out: dict[str, Any] = {}
    for name, url in servers.items():
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.netloc:
            raise ConfigurationError(f"server {name!r} needs a ws:// or wss:// URL, not {url!r}")
        if not COMPONENT_KEY.fullmatch(name):
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


def close_codes() -> list[dict[str, Any]]:
    """Every close code as data, for the ``x-tempest-ws-close-codes`` extension."""
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


def channel_description(settings: WebSocketSettings) -> str:
    """Markdown: authentication, heartbeat, limits and the close-code table."""
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
        f"rejected token closes {CloseCode.UNAUTHORIZED:d} after the handshake.\n\n"
        f"**Heartbeat.** The server sends `ping` every {settings.WS_HEARTBEAT_SECONDS:g} s "
        f"and closes {CloseCode.HEARTBEAT_TIMEOUT:d} after "
        f"{settings.WS_HEARTBEAT_TIMEOUT_SECONDS:g} s without any "
        "inbound frame; answer each `ping` with a `pong`.\n\n"
        f"**Limits.** Frames over {settings.WS_MAX_MESSAGE_BYTES} bytes close "
        f"{CloseCode.MESSAGE_TOO_BIG:d}; "
        "malformed frames get an `error` envelope.\n\n"
        "**Close codes** (also in the `x-tempest-ws-close-codes` extension):\n\n"
        "| Code | Name | Meaning | Client should |\n|---|---|---|---|\n" + rows
    )


def ws_binding(settings: WebSocketSettings) -> dict[str, Any]:
    """The WebSockets binding of the channel: the handshake's headers and query."""
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


def security_schemes(settings: WebSocketSettings) -> dict[str, Any]:
    """The ways to present the token, by scheme name."""
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
