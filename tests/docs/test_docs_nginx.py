"""The nginx configuration of ``docs/deployment.md``, run by a real nginx in front of a
real uvicorn: the upgrade goes through with the bearer subprotocol, and a ``?token=``
never reaches nginx's access log.

The block is taken from the page as it is; only what a test machine must change is
replaced: the TLS ``listen`` becomes a loopback port, the upstream points at the test
server, and the log lands in a temporary directory.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tempest_ws.testing import serve
from tests.helpers.docs_blocks import doc_block
from tests.helpers.server_process import free_port
from tests.helpers.support import build_app, make_settings, require_tool, token

pytestmark = pytest.mark.e2e

WAIT = 30.0


def nginx_conf(block: str, *, port: int, upstream: str, logs: Path) -> str:
    """The page's block inside a minimal main configuration, bound to loopback."""
    replacements = {
        "listen 443 ssl;": f"listen 127.0.0.1:{port};",
        "server 127.0.0.1:8000;": f"server {upstream};",
        "/var/log/nginx/ws.log": str(logs / "ws.log"),
    }
    for old, new in replacements.items():
        assert old in block, f"deployment.md's nginx block no longer has {old!r}"
        block = block.replace(old, new)
    return (
        f"pid {logs / 'nginx.pid'};\n"
        f"error_log {logs / 'error.log'} warn;\n"
        "daemon off;\nworker_processes 1;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"  access_log {logs / 'other.log'};\n"
        f"  client_body_temp_path {logs}; proxy_temp_path {logs};\n"
        f"  fastcgi_temp_path {logs}; uwsgi_temp_path {logs}; scgi_temp_path {logs};\n"
        f"{block}\n}}\n"
    )


@pytest.fixture
async def proxied(tmp_path: Path) -> AsyncIterator[tuple[str, Path]]:
    nginx = require_tool("nginx")
    settings = make_settings(WS_TRUSTED_PROXIES=["127.0.0.1"])
    app, _ = build_app(settings)
    async with serve(app, settings=settings) as base:
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(
            nginx_conf(
                doc_block("docs/deployment.md", "map $http_upgrade $connection_upgrade {"),
                port=port,
                upstream=base.removeprefix("http://"),
                logs=tmp_path,
            )
        )
        checked = await asyncio.to_thread(
            subprocess.run,
            [nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(conf)],
            capture_output=True,
            text=True,
            timeout=WAIT,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr
        process = subprocess.Popen(  # noqa: ASYNC220 - spawned only; stopped by PID below
            [nginx, "-p", str(tmp_path), "-c", str(conf)], stderr=subprocess.DEVNULL
        )
        try:
            for _ in range(int(WAIT * 10)):
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.1)
                else:
                    writer.close()
                    break
            yield f"ws://127.0.0.1:{port}/ws", tmp_path
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, WAIT)


async def test_the_documented_nginx_config_proxies_the_websocket(
    proxied: tuple[str, Path],
) -> None:
    url, logs = proxied
    secret_token = token("alice")
    async with connect(url, subprotocols=["bearer", secret_token], open_timeout=WAIT) as ws:
        assert ws.subprotocol == "bearer"
        hello = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
        assert hello["type"] == "hello"
    query_token = token("bob")
    async with connect(f"{url}?token={query_token}", open_timeout=WAIT) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), WAIT))["type"] == "hello"
    await asyncio.sleep(0)  # nginx writes the access line when the socket closes
    for _ in range(int(WAIT * 10)):
        written = (logs / "ws.log").read_text() if (logs / "ws.log").exists() else ""
        if written.count("GET /ws") >= 2:
            break
        await asyncio.sleep(0.1)
    assert written.count("GET /ws") == 2, written
    assert query_token not in written
    assert "token=" not in written
