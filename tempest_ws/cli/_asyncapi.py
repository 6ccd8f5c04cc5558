"""``tempest-ws asyncapi``: print the AsyncAPI document an app serves.

The document is the one
[`tempest_ws.asyncapi.add_asyncapi_route()`][tempest_ws.asyncapi._document.add_asyncapi_route]
serves; the
command
asks the app for it in process, through its ASGI interface, without starting a server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from starlette.routing import NoMatchFound

from tempest_ws.cli._common import import_app
from tempest_ws.exceptions import ConfigurationError, MissingDependencyError

ROUTE_NAME = "tempest_ws_asyncapi"


async def _get(app: Any, path: str) -> tuple[int, bytes]:
    """One in-process ``GET path`` through the app's ASGI interface (no server)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"localhost")],
        "server": ("localhost", 80),
        "client": ("127.0.0.1", 0),
    }
    status = 0
    body = bytearray()

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, receive, send)
    return status, bytes(body)


def document_of(app: Any, doc_path: str | None = None) -> dict[str, Any]:
    """The AsyncAPI document ``app`` serves, fetched in process from ``doc_path`` (by
    default the path of the route
    [`add_asyncapi_route()`][tempest_ws.asyncapi._document.add_asyncapi_route]
    added).

    Raises:
        ConfigurationError: the app serves no document there.
    """
    if doc_path is None:
        try:
            doc_path = str(app.url_path_for(ROUTE_NAME))
        except (NoMatchFound, AttributeError):
            raise ConfigurationError(
                "the app serves no AsyncAPI document: call tempest_ws.add_asyncapi_route("
                "router, messages, settings=settings) on the router you include"
            ) from None
    status, body = asyncio.run(_get(app, doc_path))
    if status != 200:
        raise ConfigurationError(f"GET {doc_path} answered HTTP {status}, not a document")
    document: dict[str, Any] = json.loads(body)
    return document


def add_parser(commands: Any) -> None:
    """Register ``asyncapi`` on the subcommand table."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "asyncapi",
        help="print the AsyncAPI document of an app",
        description="Import APP (module:attribute) and print the AsyncAPI 3.0.0 document its "
        "add_asyncapi_route serves, as JSON (default) or YAML.",
    )
    parser.add_argument("app", help="the ASGI app as module:attribute, e.g. app:app")
    parser.add_argument("--format", choices=("json", "yaml"), default="json")
    parser.add_argument(
        "--path", default=None, help="the document's URL path (default: the route's own)"
    )
    parser.set_defaults(handler=asyncapi_command)


def asyncapi_command(args: argparse.Namespace) -> int:
    """Write the document to stdout."""
    document = document_of(import_app(args.app), args.path)
    if args.format == "json":
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return 0
    try:
        import yaml
    except ImportError:
        raise MissingDependencyError("pyyaml", "cli") from None
    sys.stdout.write(yaml.safe_dump(document, sort_keys=False))
    return 0
