"""Every fenced code block of README.md and docs/*.md is run by the suite.

A block is covered when it is

- only ``--8<--`` includes of files the suite runs (``docs_src/`` modules imported by
  ``tests/docs/test_docs_src.py``, examples a test imports, test files, the package itself);
- a JSON block: :func:`test_json_blocks_parse_and_envelopes_validate` parses it;
- named by page and first line in a test, through :func:`tests.helpers.docs_blocks.doc_block`
  or a ``(page, first line)`` entry of a table a test runs (this module's
  :data:`SHELL_BLOCKS`, the JavaScript blocks of ``tests/docs/test_docs_js.py``);
- listed in :data:`ILLUSTRATIONS` (diagrams, formulas, sample log lines: nothing to run)
  or :data:`NOT_YET_RUN` (with what is missing).

:func:`test_every_block_is_run_by_a_test` fails on any other block, so a new block
cannot slip in untested. Shell blocks run where they can here (``tempest-ws token``,
``python -c``); a command that starts a server or needs a real deployment is checked
for what can be checked without one: the module, script or make target exists, and
every ``--flag`` is one the program accepts.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, WebSocket

import tempest_ws
from tempest_ws import (
    HistoryPolicy,
    RedisBackplane,
    RedisHistory,
    WebSocketConnection,
    WebSocketHub,
    WebSocketSettings,
    WSEnvelope,
    allow_any_topic,
    requested_position,
)
from tempest_ws.server import run, uvicorn_options
from tempest_ws.testing import expect_envelope, serve
from tests.helpers.docs_blocks import ROOT, all_blocks, doc_block
from tests.helpers.redis_server import RedisServer
from tests.helpers.support import SECRET, build_app, make_settings, token, ws_url

ILLUSTRATIONS: dict[tuple[str, str], str] = {
    ("docs/contributing.md", "run 1/3: exit 0 in 412s"): "sample output",
    ("docs/architecture.md", "tempest_ws/"): (
        "folder picture; tests/docs/test_architecture_doc.py checks it names every folder"
    ),
    (
        "docs/architecture.md",
        "client ── GET /ws (Origin, bearer subprotocol) ──► FastAPI dependencies (router/_route.py)",
    ): "diagram; tests/docs/test_architecture_doc.py checks the modules it names",
    ("docs/architecture.md", "hub.broadcast / send_to / send_to_connection"): (
        "diagram; tests/docs/test_architecture_doc.py checks the modules it names"
    ),
    (
        "docs/hub.md",
        "hub.broadcast(envelope, topic=…, exclude=…)   /   hub.send_to(user, envelope)",
    ): "diagram",
    (
        "docs/lifecycle.md",
        "client ── GET /ws  Upgrade, Origin, Sec-WebSocket-Protocol: bearer, <jwt>   (or ?token=)",
    ): "diagram",
    (
        "docs/scaling.md",
        'hub.broadcast(envelope, topic="room:1")            on process A',
    ): "diagram",
    (
        "docs/scaling.md",
        "cpu = publishes × 63 µs  +  packets_in × 38 µs  +  deliveries × 6.4 µs  +  3 ms",
    ): "formula",
    ("docs/scaling.md", "publishes      P = D / F"): "formulas",
    (
        "docs/scaling.md",
        "WARNING tempest_ws.backplane: redis pub/sub link down (ConnectionError: Connection closed by server.); reconnecting",
    ): "sample log output",
    (
        "docs/security.md",
        "security rate_limited connection=3f2b9c0d1e2f.9a… reason=inbound frames over the budget budget=1200",
    ): "sample log line",
    (
        "docs/backplane.md",
        '{"v":1,"n":"3f9c0a1b2c4d","o":"topic","t":"room:1","x":["3f9c0a1b2c4d.9e1f…"]}',
    ): "sample packet header",
    (
        "docs/tracing.md",
        '{"v":1,"n":"3f9c0a1b2c4d","o":"topic","t":"room:1","tp":{"traceparent":"00-4bf9…-00f0…-01"}}',
    ): "sample packet",
    (
        "docs/cli.md",
        "tempest-ws run app:app          serve an app with the safe uvicorn options",
    ): "the command's --help summary",
}
"""Blocks with nothing to run: diagrams, formulas and sample output."""

NOT_YET_RUN: dict[tuple[str, str], str] = {}
"""Blocks the suite does not run yet, with what is missing."""

SHELL_BLOCKS: list[tuple[str, str]] = [
    ("README.md", "./scripts/demo.sh   # the chat demo on http://127.0.0.1:8000"),
    ("docs/quickstart.md", "./scripts/demo.sh   # the chat demo on http://127.0.0.1:8000"),
    (
        "docs/quickstart.md",
        "export WS_JWT_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(48))')",
    ),
    ("docs/quickstart.md", "tempest-ws token --sub ann      # and: tempest-ws token --sub bob"),
    ("docs/quickstart.md", "pip install -e '.[server]'            # from a checkout, editable"),
    ("docs/quickstart.md", "export WS_JWT_SECRET=change-me-to-32-bytes-or-more-please"),
    ("docs/quickstart.md", 'python -c "import uuid; from tempest_ws.testing import make_token; \\'),
    ("docs/quickstart.md", "python -m examples.http_push"),
    (
        "docs/asyncapi.md",
        "WS_JWT_SECRET=change-me-to-32-bytes-or-more-please python -m examples.typed_messages",
    ),
    ("docs/browser-client.md", "make demo            # or: python -m examples.chat"),
    (
        "docs/browser-client.md",
        "python -c \"import tempest_ws, pathlib; print(pathlib.Path(tempest_ws.__file__).parent / 'static')\"",
    ),
    ("docs/cli.md", "tempest-ws run app:app --host 0.0.0.0 --port 8000 --workers 4"),
    ("docs/contributing.md", "scripts/test-under-load.sh 3"),
    ("docs/contributing.md", "./scripts/test.sh -k wheel                 # still two workers"),
    (
        "docs/contributing.md",
        ".venv/bin/python -m pip install --require-hashes -r requirements/dev.lock",
    ),
    (
        "docs/contributing.md",
        "scripts/lock.sh                          # every pin to its newest release (also: make lock)",
    ),
    ("docs/contributing.md", "scripts/compat.sh                     # floors, then newest"),
    (
        "docs/contributing.md",
        ".venv/bin/python -m build             # dist/tempest_ws-<version>.tar.gz and the wheel",
    ),
    (
        "docs/contributing.md",
        "scripts/test-under-load.sh 30 tests/redis/test_realtime_presence_contract.py -q -p no:cacheprovider",
    ),
    (
        "docs/performance.md",
        "python -m bench --full --with-10k --with-history --with-scale --scale-args '--storm-limit 600 --limit 1400'",
    ),
    (
        "docs/cli.md",
        "export WS_JWT_SECRET=$(python -c 'import secrets; print(secrets.token_urlsafe(48))')",
    ),
    ("docs/cli.md", "tempest-ws check            # the effective configuration, then the findings"),
    ("docs/cli.md", "tempest-ws asyncapi app:app > asyncapi.json"),
    ("docs/dashboard.md", "python -m examples.dashboard"),
    (
        "docs/demo.md",
        "make demo                 # sets up .venv if needed, then runs python -m examples.chat",
    ),
    ("docs/demo.md", "export WS_JWT_SECRET=change-me-to-32-bytes-or-more-please"),
    ("docs/deployment.md", "uvicorn myapp:app --host 0.0.0.0 --port 8000 \\"),
    (
        "docs/deployment.md",
        "tempest-ws run myapp:app --host 0.0.0.0 --port 8000 --log-level info --timeout-graceful-shutdown 30",
    ),
    (
        "docs/metrics.md",
        "pip install 'prometheus-client>=0.20'   # the metrics extra (or pip install -e '.[metrics]' in a checkout)",
    ),
    (
        "docs/metrics.md",
        "export PROMETHEUS_MULTIPROC_DIR=/run/tempest-metrics   # empty it before every start",
    ),
    (
        "docs/performance.md",
        "python -m bench --full --with-10k --with-history --with-scale --scale-args '--storm-limit 600 --limit 1400' --out bench/results/latest.json",
    ),
    (
        "docs/python-client.md",
        "pip install 'websockets>=15.0'   # the client extra (or pip install -e '.[client]' in a checkout)",
    ),
    ("docs/scaling.md", "pip install 'redis>=8.1'                               # the redis extra"),
    ("docs/settings.md", "tempest-ws run app:app"),
    (
        "docs/tracing.md",
        "pip install 'opentelemetry-api>=1.20'   # the otel extra (or pip install -e '.[otel]' in a checkout)",
    ),
    ("docs/tracing.md", "git archive 34bf776 | tar -x -C /tmp/tempest-base"),
]
"""Shell blocks, run (or checked) by :func:`test_shell_block`."""

ENV_BLOCKS: list[tuple[str, str]] = [
    (
        "docs/authentication.md",
        "WS_ALLOWED_ORIGINS=https://app.example.com,https://*.example.org,http://localhost:5173",
    ),
    ("docs/authentication.md", "WS_JWT_SECRET=a-random-secret-of-at-least-32-bytes..."),
    ("docs/authentication.md", "WS_JWT_ALGORITHMS=ES256"),
]
"""``.env`` fragments, loaded by :func:`test_env_block_is_a_valid_env_file`."""


# -- the scanner ------------------------------------------------------------------------


def _named_in_tests() -> set[tuple[str, str]]:
    """``(page, first line)`` pairs the tests name: ``doc_block`` calls and tuples."""
    named: set[tuple[str, str]] = set()
    for path in (ROOT / "tests").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            args: list[ast.expr] = []
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "doc_block":
                args = node.args
            elif isinstance(node, ast.Tuple):
                args = node.elts
            values = [a.value for a in args[:2] if isinstance(a, ast.Constant)]
            if len(values) == 2 and all(isinstance(v, str) for v in values):
                page, first = values
                if page == "README.md" or (page.startswith("docs/") and page.endswith(".md")):
                    named.add((page, first.strip()))
    return named - set(ILLUSTRATIONS) - set(NOT_YET_RUN)


def _docs_src_modules_imported(source: str) -> set[str]:
    """The ``docs_src`` modules a test module imports (``from docs_src import x``, or
    ``docs_src.x`` named in a string, as ``importlib`` is given it)."""
    found = set(re.findall(r"\bdocs_src\.(\w+)", source))
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module == "docs_src":
            found |= {alias.name for alias in node.names}
    return found


def _include_is_run(path: str, tests_text: str, docs_src_test: str) -> bool:
    file = ROOT / path
    if not file.is_file():
        return False
    if path.startswith("docs_src/"):
        stem = Path(path).stem
        return stem in _docs_src_modules_imported(docs_src_test) or f"docs_src.{stem}" in tests_text
    if path.startswith("examples/"):
        dotted = path.removesuffix(".py").replace("/", ".")
        parent, _, name = dotted.rpartition(".")
        static = "/static" in path or path.endswith(".html")
        return (
            dotted in tests_text
            or f"from {parent} import {name}" in tests_text
            or (static and Path(path).name in tests_text)
            or (static and path.split("/")[1] in tests_text)
        )
    return path.startswith(("tests/", "tempest_ws/"))


def test_every_block_is_run_by_a_test() -> None:
    tests_text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").rglob("*.py"))
    docs_src_test = (ROOT / "tests" / "docs" / "test_docs_src.py").read_text(encoding="utf-8")
    named = _named_in_tests()
    exempt = set(ILLUSTRATIONS) | set(NOT_YET_RUN)
    missing = []
    for block in all_blocks():
        where = f"{block.page}:{block.line} [{block.lang}] {block.first[:70]}"
        if block.includes:
            unrun = [
                p for p, _ in block.includes if not _include_is_run(p, tests_text, docs_src_test)
            ]
            if unrun:
                missing.append(f"{where}: includes {unrun}, which no test runs")
        elif block.lang == "json":
            continue
        elif (block.page, block.first) not in named | exempt:
            missing.append(where)
    assert missing == [], "blocks no test runs:\n" + "\n".join(missing)


def test_the_registry_names_only_existing_blocks() -> None:
    existing = {(b.page, b.first) for b in all_blocks()}
    listed = _named_in_tests() | set(ILLUSTRATIONS) | set(NOT_YET_RUN)
    assert sorted(listed - existing) == []


def test_json_blocks_parse_and_envelopes_validate() -> None:
    checked = 0
    for block in all_blocks():
        if block.lang != "json":
            continue
        try:
            values = [json.loads(block.text)]
        except json.JSONDecodeError:
            values = [json.loads(line) for line in block.text.splitlines() if line.strip()]
        for value in values:
            if isinstance(value, dict) and {"type", "data"} <= value.keys():
                WSEnvelope.model_validate(value)
            checked += 1
    assert checked >= 30


# -- shell blocks -----------------------------------------------------------------------


def _logical_lines(text: str) -> list[str]:
    return [line.strip() for line in text.replace("\\\n", " ").splitlines() if line.strip()]


def _bash(command: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", command], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _help(argv: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _flags_accepted(words: list[str], help_text: str) -> None:
    for word in words:
        if word.startswith("--"):
            flag = word.split("=")[0]
            assert re.search(rf"{re.escape(flag)}\b", help_text), f"{flag} is not an option"


def _extras() -> set[str]:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project.optional-dependencies]")[1].split("\n[")[0]
    return set(re.findall(r"^([a-z]+) = ", section, re.M))


def _declared_requirements() -> set[str]:
    """Every requirement string of every extra in pyproject.toml (``redis>=8.1``, ...)."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = text.split("[project.optional-dependencies]")[1].split("\n[")[0]
    return set(re.findall(r'"([^"]+)"', section))


def _check_command(words: list[str], line: str, env: dict[str, str], cwd: Path) -> str:
    """Run or check one simple command; return what was done, for the failure message."""
    bindir = Path(sys.executable).parent
    while words and re.match(r"^[A-Z_]+=", words[0]):
        name = words.pop(0).split("=")[0]
        assert not name.startswith("WS_") or name in WebSocketSettings.model_fields, name
    if not words:
        return "assignment"
    program, args = words[0], words[1:]
    if program == "export":
        name = args[0].split("=")[0]
        assert name in WebSocketSettings.model_fields or name == "PROMETHEUS_MULTIPROC_DIR"
        return "export"
    if program.startswith(("./scripts/", "scripts/")):
        script = ROOT / program
        assert script.is_file(), program
        assert os.access(script, os.X_OK), program
        return "script exists"
    if program == "make":
        makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
        assert re.search(rf"^{args[0]}:", makefile, re.M), args[0]
        return "make target exists"
    if program in ("python", ".venv/bin/python"):
        if args[0] == "-m":
            # pip is the installer, not a dependency: a venv made by uv may not carry it.
            assert args[1] == "pip" or importlib.util.find_spec(args[1]) is not None, args[1]
            return "module exists"
        if args[0] == "-c":
            done = _bash(line.replace(".venv/bin/python", "python"), env, cwd)
            assert done.returncode == 0, done.stderr
            assert done.stdout.strip(), "printed nothing"
            return "ran"
        assert (ROOT / args[0]).is_file(), args[0]
        return "script exists"
    if program == "tempest-ws":
        command = [str(bindir / "tempest-ws"), args[0]]
        if args[0] in ("token", "check"):
            done = subprocess.run(
                [*command, *args[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
            )
            assert done.returncode in (0, 1), done.stderr
            assert "Traceback" not in done.stderr
            return "ran"
        _flags_accepted(args, _help([*command, "--help"], env))
        return "flags accepted"
    if Path(program).name == "twine":
        assert importlib.util.find_spec("twine") is not None, "twine"
        return "tool installed"
    if program == "uvicorn":
        _flags_accepted(args, _help([str(bindir / "uvicorn"), "--help"], env))
        return "flags accepted"
    if program == "pip":
        assert args[0] == "install"
        for requirement in args[1:]:
            extra = re.fullmatch(
                r"(?:tempest-ws|\.|dist/tempest_ws-[\w.]+-py3-none-any\.whl)\[(\w+)\]", requirement
            )
            if extra:
                assert extra[1] in _extras(), requirement
            elif re.search(r"[<>=]", requirement):  # an extra's own requirement, as declared
                assert requirement in _declared_requirements(), requirement
            else:
                assert requirement == "-e" or re.fullmatch(r"[a-z][a-z0-9-]+", requirement)
        return "extras exist"
    if program == "git":
        assert args[0] == "archive"
        done = subprocess.run(["git", "cat-file", "-e", args[1]], cwd=ROOT, capture_output=True)
        assert done.returncode == 0, f"no commit {args[1]}"
        return "commit exists"
    if program in ("tar", "rm", "mkdir", "curl"):
        return "standard tool"
    raise AssertionError(f"no rule for {program!r} in {line!r}")


@pytest.mark.parametrize(("page", "first"), SHELL_BLOCKS)
def test_shell_block(page: str, first: str, tmp_path: Path) -> None:
    text = doc_block(page, first)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WS_")}
    env["WS_JWT_SECRET"] = SECRET
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(ROOT)
    done = []
    for line in _logical_lines(text):
        line = re.sub(r"(^|\s)#.*$", "", line).strip()  # a comment is prose, not commands
        if not line:
            continue
        if "$(" in line or re.match(r"^\S*python -c ", line):  # run the whole line
            result = _bash(line.replace(".venv/bin/python", sys.executable), env, tmp_path)
            assert result.returncode == 0, result.stderr
            assert "$(" in line or result.stdout.strip(), "printed nothing"
            done.append("ran")
            continue
        for part in re.split(r"\s*(?:&&|\||;)\s*", line):
            words = shlex.split(re.sub(r">(?!=)", " > ", part.rstrip("&")), comments=True)
            if ">" in words:
                words = words[: words.index(">")]
            if words:
                done.append(_check_command(words, part, env, tmp_path))
    assert done


@pytest.mark.parametrize(("page", "first"), ENV_BLOCKS)
def test_env_block_is_a_valid_env_file(page: str, first: str, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(doc_block(page, first), encoding="utf-8")
    values = {
        name: value.strip('"')
        for name, value in re.findall(r'^(WS_\w+)=("(?:[^"]|\n)*"|.*)$', env_file.read_text(), re.M)
    }
    settings = WebSocketSettings(_env_file=env_file)  # type: ignore[call-arg]
    assert values
    for name in values:
        assert name in WebSocketSettings.model_fields
        assert getattr(settings, name) not in (None, "", [], ())


# -- Python blocks of pages whose code is shown inline ----------------------------------


async def run_block(code: str, namespace: dict[str, Any], name: str) -> dict[str, Any]:
    """Run a block (top-level ``await`` allowed) in ``namespace``; return the namespace."""
    compiled = compile(code, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)  # the docs' own code, nothing else
    if inspect.iscoroutine(result):
        await result
    return namespace


@pytest.mark.redis
async def test_history_turning_it_on(redis: RedisServer) -> None:
    code = doc_block(
        "docs/history.md", "hub = WebSocketHub(                                   # in memory"
    )
    names = {
        "WebSocketHub": WebSocketHub,
        "HistoryPolicy": HistoryPolicy,
        "RedisBackplane": RedisBackplane,
        "RedisHistory": RedisHistory,
        "url": redis.url,
        "may_read": allow_any_topic,
    }
    split = code.index("hub = WebSocketHub(", 1)
    in_memory = (await run_block(code[:split], dict(names), "history.md"))["hub"]
    on_redis = (await run_block(code, dict(names), "history.md"))["hub"]
    for hub in (in_memory, on_redis):
        await hub.start()
        try:
            await hub.broadcast({"type": "chat.message", "data": "hi"}, topic="chat:1")
            page = await hub.history("chat:1")
            assert [entry.frame for entry in page.entries] != []
        finally:
            await hub.stop()
    assert isinstance(on_redis.backplane, RedisBackplane)


async def test_history_subscribe_with_a_position_from_a_handler() -> None:
    code = doc_block("docs/history.md", "await hub.subscribe(connection.connection_id, topic,")
    settings = make_settings()
    hub = WebSocketHub(
        history_policy=HistoryPolicy(topics=("chat:*",)), topic_authorizer=allow_any_topic
    )

    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        while True:
            envelope = WSEnvelope.model_validate(await ws.receive_json())
            data = envelope.data
            topic = data["topic"]
            names = {"hub": hub, "connection": connection, "topic": topic, "data": data}
            names |= {"envelope": envelope, "requested_position": requested_position}
            await run_block(code, names, "history.md")

    app, _ = build_app(settings, handler=handler, hub=hub)
    async with serve(app) as base:
        from websockets.asyncio.client import connect

        protocols: Any = ["bearer", token("ann")]
        async with connect(ws_url(base), subprotocols=protocols, proxy=None) as ws:
            await expect_envelope(ws, "hello")
            await ws.send('{"type":"join","data":{"topic":"chat:1"},"request_id":"j-1"}')
            recovery = await expect_envelope(ws, "recovery")  # a first subscribe: no position
            assert (recovery.data["topic"], recovery.data["recovered"]) == ("chat:1", False)
            await hub.broadcast({"type": "chat.message", "data": "hi"}, topic="chat:1")
            message = await expect_envelope(ws, "chat.message")
            assert message.data == "hi"


async def test_scaling_catches_a_backplane_error() -> None:
    code = doc_block("docs/scaling.md", "try:")
    settings = make_settings()
    app, hub = build_app(settings)
    async with serve(app) as base:
        from websockets.asyncio.client import connect

        protocols: Any = ["bearer", token("ann")]
        async with connect(ws_url(base), subprotocols=protocols, proxy=None) as ws:
            await expect_envelope(ws, "hello")
            await ws.send('{"type": "subscribe", "data": {"topic": "room:1"}}')
            await expect_envelope(ws, "subscribed")
            envelope = WSEnvelope(type="note", data="hi")
            names = {"hub": hub, "envelope": envelope, "room": "room:1"}
            names |= {"BackplaneError": tempest_ws.BackplaneError, "log": None}
            await run_block(code, names, "scaling.md")
            assert (await expect_envelope(ws, "note")).data == "hi"


def test_scaling_gunicorn_worker_carries_the_server_options() -> None:
    code = doc_block(
        "docs/scaling.md",
        "# workers.py: gunicorn myapp:app -k workers.TempestWorker -w 4 --backlog 256",
    )
    tree = ast.parse(code)
    imports = [n for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert [(n.module, [a.name for a in n.names]) for n in imports] == [
        ("uvicorn_worker", ["UvicornWorker"])
    ]
    worker = next(n for n in tree.body if isinstance(n, ast.ClassDef))
    assign = next(n for n in worker.body if isinstance(n, ast.Assign))
    assert ast.literal_eval(assign.value) == uvicorn_options(WebSocketSettings())


def test_settings_building_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("WS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WS_JWT_SECRET", SECRET)
    monkeypatch.setenv("DATABASE_URL", "sqlite:///docs.db")

    async def handler(ws: WebSocket, connection: WebSocketConnection, hub: WebSocketHub) -> None:
        await ws.receive_json()

    names: dict[str, Any] = {"handler": handler}
    code = doc_block(
        "docs/settings.md",
        "from tempest_ws import WebSocketHub, WebSocketSettings, jwt_bearer_resolver, make_websocket_router",
    )
    exec(compile(code, "settings.md", "exec"), names)
    assert isinstance(names["router"], tempest_ws.WebSocketRouter)
    mixin = doc_block("docs/settings.md", "from pydantic_settings import BaseSettings")
    exec(compile(mixin, "settings.md", "exec"), names)  # WebSocketHub: from the block above
    assert names["settings"].DATABASE_URL == "sqlite:///docs.db"
    assert names["settings"].WS_JWT_SECRET.get_secret_value() == SECRET
    assert isinstance(names["hub"], WebSocketHub)


def test_settings_run_and_uvicorn_options_calls_are_valid() -> None:
    code = doc_block("docs/settings.md", "from tempest_ws.server import run, uvicorn_options")
    settings = make_settings()
    tree = ast.parse(code)
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    app = FastAPI()
    names: dict[str, Any] = {"app": app, "settings": settings}
    names |= {"run": run, "uvicorn_options": uvicorn_options, "uvicorn": uvicorn}
    for call in calls:
        target = ast.unparse(call.func)
        if target == "run":
            kwargs = {k.arg: eval(ast.unparse(k.value), names) for k in call.keywords}
            inspect.signature(run).bind(app, **kwargs)
        elif target == "uvicorn.run":
            uvicorn.Config(app, **uvicorn_options(settings))
    documented = re.search(r"^# (\{.*?\})$", code.replace("\n#  ", " "), re.M | re.S)
    assert documented is not None
    shown = (
        documented[1]
        .replace("settings.WS_MAX_MESSAGE_BYTES", "65536")
        .replace("settings.WS_LISTEN_BACKLOG", "256")
        .replace("False", "false")
    )
    shown = shown.replace("None", "null")
    assert json.loads(shown) == {**uvicorn_options(WebSocketSettings(WS_JWT_SECRET=SECRET))}  # type: ignore[call-arg]


def test_the_sdk_migration_imports() -> None:
    code = doc_block("docs/migrate-from-tempest-fastapi-sdk.md", "# before")
    before, after = (n for n in ast.parse(code).body if isinstance(n, ast.ImportFrom))
    assert before.module == "tempest_fastapi_sdk"
    kept = {a.name for a in before.names} - {"JWTUtils"}
    assert kept <= set(tempest_ws.__all__)
    assert after.module == "tempest_ws"
    names: dict[str, Any] = {}
    exec(compile(ast.Module(body=[after], type_ignores=[]), "migrate.md", "exec"), names)
    assert {a.name for a in after.names} <= names.keys()
    assert "jwt_bearer_resolver" in names
