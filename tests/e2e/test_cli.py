"""The ``tempest-ws`` console script, run as the installed executable.

Each command runs in a child process with a clean ``WS_*`` environment and a temporary
working directory, as a user would run it; ``run`` serves a real app and a real
``websockets`` client checks the options it applied.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tempest_ws.cli._check import masked_url, review
from tests.helpers.server_process import free_port
from tests.helpers.support import SECRET, make_settings, token

SCRIPT = Path(sys.executable).with_name("tempest-ws")

APP = """\
from fastapi import FastAPI, WebSocket

from tempest_ws import WebSocketSettings, jwt_bearer_resolver, make_websocket_router
from tempest_ws import WebSocketHub
from tempest_ws.asyncapi import add_asyncapi_route

settings = WebSocketSettings()
hub = WebSocketHub.from_settings(settings)


async def handler(ws: WebSocket, connection, hub) -> None:
    while True:
        await ws.send_json(await ws.receive_json())


router = make_websocket_router(
    handler, hub=hub, bearer_resolver=jwt_bearer_resolver(settings), settings=settings
)
add_asyncapi_route(router, settings=settings, title="CLI test")
app = FastAPI()
app.include_router(router)
"""


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WS_")}
    env.update(values)
    return env


def tempest_ws(
    *args: str, cwd: Path, timeout: float = 30, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(APP)
    return tmp_path


def test_the_console_script_is_installed_and_its_help_names_every_command(project: Path) -> None:
    result = tempest_ws("--help", cwd=project)
    assert result.returncode == 0
    for command in ("run", "token", "check", "asyncapi"):
        assert f"tempest-ws {command}" in result.stdout
    for command in ("run", "token", "check", "asyncapi"):
        assert tempest_ws(command, "--help", cwd=project).returncode == 0


def test_token_is_accepted_by_the_settings_resolver_claims(project: Path) -> None:
    result = tempest_ws(
        "token",
        "--sub",
        "ann",
        "--ttl",
        "15m",
        "--claim",
        'rooms=["a","b"]',
        "--claim",
        "role=admin",
        cwd=project,
        WS_JWT_SECRET=SECRET,
        WS_JWT_AUDIENCE="chat",
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"], audience="chat")
    assert claims["sub"] == "ann"
    assert claims["rooms"] == ["a", "b"]
    assert claims["role"] == "admin"
    assert 14 * 60 <= claims["exp"] - time.time() <= 15 * 60 + 5


def test_token_reads_the_env_file(project: Path) -> None:
    (project / ".env").write_text(f"WS_JWT_SECRET={SECRET}\n")
    result = tempest_ws("token", "--sub", "bob", cwd=project)
    assert result.returncode == 0, result.stderr
    assert jwt.decode(result.stdout.strip(), SECRET, algorithms=["HS256"])["sub"] == "bob"


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--ttl", "1h"], {}, "WS_JWT_SECRET"),
        (["--ttl", "1h"], {"WS_JWT_SECRET": "short"}, "at least 32 bytes"),
        (["--ttl", "soon"], {"WS_JWT_SECRET": SECRET}, "--ttl 'soon'"),
        (["--ttl", "1h"], {"WS_JWT_SECRET": SECRET, "WS_JWT_ALGORITHMS": "RS256"}, "private key"),
    ],
)
def test_token_refuses_what_the_resolver_would_refuse(
    project: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    result = tempest_ws("token", "--sub", "ann", *args, cwd=project, **env)
    assert result.returncode == 2
    assert says in result.stderr
    assert result.stdout == ""


def test_check_prints_the_configuration_with_secrets_masked(project: Path) -> None:
    redis_url = "redis://app:hunter2-password@redis.internal:6379/0"
    result = tempest_ws(
        "check",
        cwd=project,
        WS_JWT_SECRET=SECRET,
        WS_REDIS_URL=redis_url,
        WS_ALLOWED_ORIGINS="https://app.example.com",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert SECRET not in result.stdout
    assert "hunter2-password" not in result.stdout
    assert "redis://app:********@redis.internal:6379/0" in result.stdout
    assert "WS_HEARTBEAT_SECONDS" in result.stdout
    assert "warning: WS_REDIS_URL" in result.stdout  # no TLS outside loopback
    assert "0 error(s)" in result.stdout


def test_check_reports_invalid_settings_by_name(project: Path) -> None:
    (project / ".env").write_text("WS_HEARTBEAT_SECONDS=often\n")
    result = tempest_ws("check", cwd=project, WS_JWT_SECRET=SECRET)
    assert result.returncode == 2
    assert "WS_HEARTBEAT_SECONDS" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_strict_fails_on_warnings_and_errors_fail_without_it(project: Path) -> None:
    assert tempest_ws("check", "--quiet", cwd=project).returncode == 2  # no secret
    lenient = tempest_ws("check", "--quiet", cwd=project, WS_JWT_SECRET=SECRET)
    strict = tempest_ws("check", "--quiet", "--strict", cwd=project, WS_JWT_SECRET=SECRET)
    assert lenient.returncode == 0
    assert strict.returncode == 1
    assert "warning: WS_ALLOWED_ORIGINS" in strict.stdout


def test_review_flags_each_unsafe_combination() -> None:
    def flagged(**values: object) -> set[str]:
        return {f.setting for f in review(make_settings(**values))}

    safe = {"WS_ALLOWED_ORIGINS": ["https://a.example"], "WS_ALLOW_QUERY_TOKEN": False}
    assert flagged(**safe) == set()
    assert "WS_ALLOW_QUERY_TOKEN" in flagged(**{**safe, "WS_ALLOW_QUERY_TOKEN": True})
    assert "WS_ALLOWED_ORIGINS" in flagged(**{**safe, "WS_ALLOWED_ORIGINS": ["*"]})
    assert "WS_HISTORY_TOPICS" in flagged(**safe, WS_HISTORY_TOPICS=["chat:*"])
    assert "WS_JWT_ALGORITHMS" in flagged(**safe, WS_JWT_ALGORITHMS=["HS256", "RS256"])
    assert "WS_TRUSTED_PROXIES" in flagged(**safe, WS_TRUSTED_PROXIES=["*"])
    assert flagged(**safe, WS_REDIS_URL="redis://127.0.0.1:6379") == set()
    assert flagged(**safe, WS_REDIS_URL="rediss://:pw@redis.example:6380") == set()
    remote = [f.message for f in review(make_settings(**safe, WS_REDIS_URL="redis://r.example"))]
    assert any("password" in m for m in remote)
    assert any("TLS" in m for m in remote)


def test_masked_url_hides_passwords_and_lone_user_names() -> None:
    assert masked_url("redis://u:p@h:1/0") == "redis://u:********@h:1/0"
    assert masked_url("redis://secret@h") == "redis://********@h"
    assert masked_url("redis://h:6379") == "redis://h:6379"


def test_asyncapi_prints_the_apps_document_as_json_and_yaml(project: Path) -> None:
    env = {"WS_JWT_SECRET": SECRET}
    as_json = tempest_ws("asyncapi", "app:app", cwd=project, **env)
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["asyncapi"] == "3.0.0"
    assert document["info"]["title"] == "CLI test"
    as_yaml = tempest_ws("asyncapi", "app:app", "--format", "yaml", cwd=project, **env)
    assert as_yaml.returncode == 0, as_yaml.stderr
    assert "asyncapi: 3.0.0" in as_yaml.stdout


def test_asyncapi_explains_a_missing_route_or_module(project: Path) -> None:
    (project / "bare.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n")
    missing_route = tempest_ws("asyncapi", "bare:app", cwd=project)
    assert missing_route.returncode == 2
    assert "add_asyncapi_route" in missing_route.stderr
    missing_module = tempest_ws("asyncapi", "nowhere:app", cwd=project)
    assert missing_module.returncode == 2
    assert "cannot import module 'nowhere'" in missing_module.stderr
    assert tempest_ws("asyncapi", "app", cwd=project).returncode == 2


@pytest.fixture
def served(project: Path) -> Iterator[str]:
    port = free_port()
    log = project / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(SCRIPT), "run", "app:app", "--port", str(port), "--log-level", "warning"],
            cwd=project,
            env=_env(WS_JWT_SECRET=SECRET, WS_MAX_MESSAGE_BYTES="1024"),
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert process.poll() is None, log.read_text()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                time.sleep(0.1)
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.e2e
async def test_run_serves_the_app_with_the_safe_options(served: str) -> None:
    async with websockets.connect(
        served, subprotocols=["bearer", token("ann")], compression="deflate", open_timeout=10
    ) as ws:
        assert ws.subprotocol == "bearer"
        assert ws.response is not None
        assert "Sec-WebSocket-Extensions" not in ws.response.headers  # no permessage-deflate
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        await ws.send(json.dumps({"type": "echo", "data": "x" * 2000}))  # > WS_MAX_MESSAGE_BYTES
        with pytest.raises(ConnectionClosed):
            await _read_until_closed(ws)
        assert ws.close_code == 1009


async def _read_until_closed(ws: websockets.ClientConnection) -> None:
    while True:
        await ws.recv()
