"""``GET {path}/client/{module}`` serves the browser client's modules and nothing else.

Over real uvicorn, with requests written byte for byte on a socket (an HTTP client would
normalise ``..`` away before sending): dot segments, encoded slashes and backslashes,
other files of the package, names that differ only in case or carry a NUL all get 404,
never a file's content, and the server keeps serving. The dependencies given to
``include_router`` guard the modules as they guard ``client.js``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import Depends, FastAPI, HTTPException

from tempest_ws import WebSocketHub, jwt_bearer_resolver, make_websocket_router
from tempest_ws.testing import serve
from tests.helpers.support import build_app, echo_handler, make_settings

pytestmark = pytest.mark.e2e

PACKAGE = Path(__file__).parents[2] / "tempest_ws"

ATTEMPTS = [
    "/ws/client/../client.js",
    "/ws/client/../../ws/client.js",
    "/ws/client/..%2f..%2f__init__.py",
    "/ws/client/..%2F..%2Fsettings.py",
    "/ws/client/%2e%2e%2f%2e%2e%2f__init__.py",
    "/ws/client/..%5c..%5c__init__.py",
    "/ws/client/%2e%2e",
    "/ws/client/..",
    "/ws/client/",
    "/ws/client/__init__.py",
    "/ws/client/tempest-ws.d.ts",
    "/ws/client/TEMPEST-WS.JS",
    "/ws/client/tempest-ws.js%00.py",
    "/ws/client//etc/passwd",
    "/ws/client/%2fetc%2fpasswd",
    "/ws/client/missing.js",
]


async def raw_get(base: str, target: str) -> tuple[int, bytes]:
    """Send ``GET target`` exactly as written; return the status and the body."""
    url = urlsplit(base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        request = f"GET {target} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode("latin-1"))
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()
        await writer.wait_closed()
    head, _, body = response.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


async def test_only_the_client_modules_are_served() -> None:
    settings = make_settings()
    app, _ = build_app(settings)
    package_files = [path.read_bytes() for path in PACKAGE.rglob("*") if path.is_file()]
    async with serve(app, settings=settings) as base:
        for target in ATTEMPTS:
            status, body = await raw_get(base, target)
            assert status == 404, target
            assert body not in package_files, target
            assert b"export" not in body, target
            assert b"import" not in body, target
        # The server is unharmed, and still serves each module.
        for module in sorted((PACKAGE / "static" / "client").glob("*.js")):
            status, body = await raw_get(base, f"/ws/client/{module.name}")
            assert status == 200
            assert body == module.read_bytes()


async def test_include_router_dependencies_guard_the_modules() -> None:
    settings = make_settings()
    hub = WebSocketHub.from_settings(settings)
    router = make_websocket_router(
        echo_handler, hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
    )

    async def tenant(key: str | None = None) -> None:
        if key != "ok":
            raise HTTPException(status_code=401, detail="no tenant")

    app = FastAPI()
    app.include_router(router, dependencies=[Depends(tenant)])
    async with serve(app, settings=settings) as base, httpx.AsyncClient(base_url=base) as http:
        for url in ("/ws/client.js", "/ws/client/tempest-ws.js", "/ws/client/codes.js"):
            refused = await http.get(url)
            assert refused.status_code == 401, url
            assert b"export" not in refused.content
            assert (await http.get(url, params={"key": "ok"})).status_code == 200, url
