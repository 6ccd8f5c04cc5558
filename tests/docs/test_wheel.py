"""The release artifacts: the sdist and the wheel build and pass ``twine check``, and the
wheel alone, installed with ``[server]`` into a fresh virtualenv outside the checkout,
serves ``examples/minimal.py`` to a real client.

The artifacts are built once per session with ``python -m build --no-isolation`` (the
build backend comes from the lock, so no index is needed). The fresh virtualenv gets its
dependencies through uv with ``requirements/dev.lock`` as constraints: the versions the
suite tested, hash-checked, from uv's cache when it holds them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from websockets.asyncio.client import connect

from tempest_ws import CloseCode
from tests.helpers.server_process import free_port
from tests.helpers.support import SECRET
from tests.helpers.ws_client import bearer, recv, refused_with, send

ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements" / "dev.lock"
BIN = Path(sys.executable).parent
BOUND = 120.0  # seconds for one subprocess step on a loaded machine
WHEEL_DATA = (
    "tempest_ws/py.typed",
    "tempest_ws/static/tempest-ws.js",
    "tempest_ws/static/client/tempest-ws.js",
    "tempest_ws/static/client/connection.js",
    "tempest_ws/static/tempest-ws.d.ts",
    "tempest_ws/asyncapi/_document.py",
    "tempest_ws/asyncapi/_schema.py",
    "tempest_ws/hub/history/_history.py",
)


def _run(*args: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(arg) for arg in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=BOUND,
        check=False,
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="session")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dist/`` with the sdist and the wheel, built once per session."""
    out = tmp_path_factory.mktemp("dist")
    _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", out, ROOT)
    return out


def _wheel(dist: Path) -> Path:
    (wheel,) = dist.glob("tempest_ws-*-py3-none-any.whl")
    return wheel


def _clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that points Python at the checkout."""
    drop = ("PYTHON", "VIRTUAL_ENV", "WS_", "PYTEST", "COV_")
    env = {key: value for key, value in os.environ.items() if not key.startswith(drop)}
    env.update(extra)
    return env


def test_sdist_and_wheel_pass_twine_check_and_the_wheel_carries_its_data(dist: Path) -> None:
    (sdist,) = dist.glob("tempest_ws-*.tar.gz")
    wheel = _wheel(dist)
    assert "PASSED" in _run(BIN / "twine", "check", "--strict", sdist, wheel)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        requires = archive.read(metadata).decode()
    missing = [name for name in WHEEL_DATA if name not in names]
    assert missing == []
    assert not [name for name in names if name.startswith(("tests/", "examples/", "bench/"))]
    assert "Provides-Extra: server" in requires
    server = [line for line in requires.splitlines() if line.endswith("extra == 'server'")]
    assert [line.split(">=")[0] for line in server] == [
        "Requires-Dist: uvicorn[standard]",
        "Requires-Dist: websockets",
    ]


@pytest.mark.e2e
@pytest.mark.timeout(4 * BOUND)
async def test_the_wheel_with_server_serves_examples_minimal_from_a_fresh_venv(
    dist: Path, tmp_path: Path
) -> None:
    assert not tmp_path.is_relative_to(ROOT)
    venv, app_dir = tmp_path / "venv", tmp_path / "app"
    python = venv / "bin" / "python"
    env = _clean_env(WS_JWT_SECRET=SECRET)
    await asyncio.to_thread(_run, BIN / "uv", "venv", "--quiet", "--python", sys.executable, venv)
    requirement = f"tempest-ws[server] @ {_wheel(dist).as_uri()}"
    await asyncio.to_thread(
        _run, BIN / "uv", "pip", "install", "--quiet", "--python", python, "-c", LOCK, requirement
    )
    app_dir.mkdir()
    shutil.copy(ROOT / "examples" / "minimal.py", app_dir / "minimal.py")
    where = await asyncio.to_thread(
        _run, python, "-c", "import tempest_ws; print(tempest_ws.__file__)", cwd=app_dir, env=env
    )
    assert Path(where.strip()).is_relative_to(venv)
    await asyncio.to_thread(_console_script_commands, venv / "bin" / "tempest-ws", app_dir, env)

    port = free_port()
    async with _Uvicorn(python, app_dir, env, port) as base:
        async with httpx.AsyncClient(base_url=base, timeout=BOUND) as http:
            script = await http.get("/ws/client.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert script.content == (ROOT / "tempest_ws/static/tempest-ws.js").read_bytes()

        url = f"ws://127.0.0.1:{port}/ws"
        user = uuid4()
        async with connect(url, subprotocols=bearer(user), compression="deflate") as ws:
            assert ws.subprotocol == "bearer"
            assert ws.response is not None
            assert "Sec-WebSocket-Extensions" not in ws.response.headers  # run's safe options
            assert (await recv(ws))["type"] == "hello"
            await send(ws, "subscribe", {"topic": "room:lobby"})
            await send(ws, "chat.message", {"room": "lobby", "text": "from the wheel"})
            assert (await recv(ws))["data"] == {"from": str(user), "text": "from the wheel"}
        assert await refused_with(url, subprotocols=["bearer", "garbage"]) == (
            CloseCode.UNAUTHORIZED
        )


ASYNCAPI_APP = """\
from fastapi import FastAPI
from tempest_ws import WebSocketHub, WebSocketSettings, jwt_bearer_resolver, make_websocket_router
from tempest_ws.asyncapi import add_asyncapi_route

settings = WebSocketSettings()
router = make_websocket_router(
    lambda ws, connection, hub: ws.receive_json(),
    hub=WebSocketHub(),
    bearer_resolver=jwt_bearer_resolver(settings),
    settings=settings,
)
add_asyncapi_route(router, settings=settings, title="from the wheel")
app = FastAPI()
app.include_router(router)
"""


def _console_script_commands(script: Path, app_dir: Path, env: dict[str, str]) -> None:
    """``tempest-ws --help``, ``token``, ``check`` and ``asyncapi`` from the wheel's venv."""
    assert "tempest-ws run app:app" in _run(script, "--help", cwd=app_dir, env=env)
    token = _run(script, "token", "--sub", "ann", "--ttl", "5m", cwd=app_dir, env=env).strip()
    assert token.count(".") == 2
    checked = _run(script, "check", "--quiet", cwd=app_dir, env=env)
    assert "0 error(s)" in checked
    assert SECRET not in checked
    (app_dir / "documented.py").write_text(ASYNCAPI_APP)
    document = _run(script, "asyncapi", "documented:app", cwd=app_dir, env=env)
    assert '"asyncapi": "3.0.0"' in document
    assert '"title": "from the wheel"' in document


class _Uvicorn:
    """``tempest-ws run minimal:app`` (the wheel's console script) in ``app_dir`` on a
    loopback port, killed by PID."""

    def __init__(self, python: Path, app_dir: Path, env: dict[str, str], port: int) -> None:
        self.args = [str(python.with_name("tempest-ws")), "run", "minimal:app"]
        self.args += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
        self.app_dir, self.env, self.base = app_dir, env, f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> str:
        self.process = subprocess.Popen(  # noqa: ASYNC220 - only spawned; reaped in a thread
            self.args, cwd=self.app_dir, env=self.env, stderr=subprocess.PIPE
        )
        async with httpx.AsyncClient(base_url=self.base, timeout=2.0) as http:
            for _ in range(int(BOUND * 10)):
                if self.process.poll() is not None:
                    await self.__aexit__()
                    raise AssertionError("uvicorn exited before it served a request")
                try:
                    await http.get("/ws/client.js")
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
                else:
                    return self.base
        await self.__aexit__()
        raise AssertionError("uvicorn served nothing")

    async def __aexit__(self, *exc_info: object) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.kill()
        await asyncio.to_thread(process.wait, 30)
        if process.stderr is not None:
            errors = process.stderr.read().decode(errors="replace")
            process.stderr.close()
            if not any(exc_info):
                assert "Traceback" not in errors, errors
