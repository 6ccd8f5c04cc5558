"""The documentation cannot drift from the code.

- the close-code table in ``docs/close-codes.md`` is ``CloseCode`` and ``CLOSE_CODE_INFO``
  row for row;
- ``docs/settings.md`` documents every ``WebSocketSettings`` field, and no field that
  does not exist;
- the frames ``docs/lifecycle.md`` quotes are the ones the code sends;
- the origin examples in ``docs/authentication.md`` are what ``origin_allowed`` answers;
- ``docs/hub.md`` documents the hub API the issue promises, and only methods that exist;
- the README's quick start is exactly the two commands.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from fastapi import FastAPI

from tempest_ws import CLOSE_CODE_INFO, CloseCode, WebSocketHub, WebSocketSettings, origin_allowed
from tempest_ws.envelope import PING_FRAME, error_envelope
from tests.helpers.docs_blocks import doc_block

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def table_after(text: str, header: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header line is exactly ``header``."""
    lines = text.splitlines()
    assert lines.count(header) == 1, f"expected exactly one table with header {header!r}"
    start = lines.index(header)
    assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[start + 1]), "missing separator row"
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def plain(cell: str) -> str:
    """A table cell without Markdown code spans, with single spaces."""
    return " ".join(cell.replace("`", "").split())


# -- close codes ------------------------------------------------------------------------


def test_close_code_table_is_the_enum() -> None:
    rows = table_after(read("close-codes.md"), "| Code | Name | Meaning | Client should |")
    assert [(row[0], row[1]) for row in rows] == [
        (str(code.value), f"`{code.name}`") for code in CloseCode
    ]
    for row, code in zip(rows, CloseCode, strict=True):
        info = CLOSE_CODE_INFO[code]
        assert plain(row[2]) == plain(info.meaning), code.name
        assert plain(row[3]) == plain(info.client_action), code.name


# -- settings ---------------------------------------------------------------------------


def test_every_setting_is_documented() -> None:
    text = read("settings.md")
    documented = set(re.findall(r"^\| `(WS_[A-Z0-9_]+)` \|", text, flags=re.MULTILINE))
    fields = set(WebSocketSettings.model_fields)
    assert fields - documented == set(), "settings missing from docs/settings.md"
    assert documented - fields == set(), "docs/settings.md documents settings that do not exist"


# Variables of the systems a migration guide maps from, quoted as theirs, not ours.
FOREIGN_SETTINGS = {
    "migrate-from-svc-infra.md": {
        "WS_PING_INTERVAL",
        "WS_PING_TIMEOUT",
        "WS_MAX_MESSAGE_SIZE",
        "WS_CLOSE_TIMEOUT",
        "WS_OPEN_TIMEOUT",
    },
}


def test_every_ws_variable_named_in_the_docs_exists() -> None:
    fields = set(WebSocketSettings.model_fields)
    for page in sorted(DOCS.glob("*.md")):
        named = set(re.findall(r"\bWS_[A-Z0-9_]*[A-Z0-9]\b", page.read_text(encoding="utf-8")))
        named -= FOREIGN_SETTINGS.get(page.name, set())
        assert named <= fields, f"{page.name} names unknown settings: {sorted(named - fields)}"


# -- frames quoted in the lifecycle page ------------------------------------------------


def test_lifecycle_quotes_the_real_frames() -> None:
    text = read("lifecycle.md")
    assert PING_FRAME in text
    for code, message in [
        ("invalid_json", "frame is not valid JSON"),
        ("invalid_envelope", "envelope must be a JSON object"),
        ("binary_not_supported", "send JSON text frames"),
    ]:
        assert error_envelope(code, message) in text
    hello = re.search(r'^\{"type":"hello","data":\{(.*)\},"request_id":null\}$', text, re.M)
    assert hello is not None
    keys = re.findall(r'"(\w+)":', hello.group(1))
    # The keys the router puts in hello (tests/docs/test_examples.py checks the live frame).
    assert keys == [
        "connection_id",
        "heartbeat_seconds",
        "heartbeat_timeout_seconds",
        "max_message_bytes",
    ]


# -- origin examples --------------------------------------------------------------------


def test_origin_examples_match_origin_allowed() -> None:
    rows = table_after(read("authentication.md"), "| Allow-list entry | Origin header | Result |")
    assert len(rows) >= 10
    for entry, origin, result in rows:
        expected = {"allowed": True, "refused": False}[result]
        assert origin_allowed(plain(origin), [plain(entry)]) is expected, (entry, origin)


# -- hub API ----------------------------------------------------------------------------

PROMISED_HUB_API = [
    "broadcast",
    "send_to",
    "send_to_connection",
    "subscribe",
    "unsubscribe",
    "disconnect_user",
    "online_users",
    "is_online",
    "stats",
    "from_settings",
    "start",
    "stop",
]


@pytest.mark.parametrize("name", PROMISED_HUB_API)
def test_hub_page_documents_the_promised_api(name: str) -> None:
    assert callable(getattr(WebSocketHub, name, None)), f"WebSocketHub.{name} is missing"
    assert re.search(rf"`(await )?(hub\.)?{name}\(", read("hub.md")), f"{name} not in hub.md"


def test_hub_page_documents_only_existing_methods() -> None:
    headed = re.findall(r"^### `(\w+)\(", read("hub.md"), flags=re.MULTILINE)
    assert headed
    assert [name for name in headed if not hasattr(WebSocketHub, name)] == []


# -- README ---------------------------------------------------------------------------


def test_readme_quick_start_is_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"## Quick start\n(.*?)\n## ", readme, re.S)
    assert block is not None, "README needs a '## Quick start' section"
    commands = re.findall(r"```(?:bash|sh)\n(.*?)```", block.group(1), re.S)
    lines = [line.split("#")[0].strip() for c in commands for line in c.splitlines()]
    assert [line for line in lines if line] == ["./scripts/demo.sh", "./scripts/test.sh"]
    assert "http://127.0.0.1:8000" in block.group(1)


def test_readme_minimum_setup_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    code = doc_block("README.md", "from fastapi import FastAPI")
    monkeypatch.chdir(tmp_path)  # no .env
    for name in [n for n in os.environ if n.startswith("WS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("WS_JWT_SECRET", "readme-secret-0123456789abcdef-0123")
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    app = namespace["app"]
    assert isinstance(app, FastAPI)
    assert app.url_path_for("tempest_ws") == "/ws"
