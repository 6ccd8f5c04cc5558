"""docs/hub.md's connection states are `ConnectionState`, in order, with its moves."""

from __future__ import annotations

import re
from pathlib import Path

from tempest_ws import ConnectionState
from tempest_ws.hub._state import advance
from tests.helpers.docs_blocks import doc_block

ROOT = Path(__file__).resolve().parents[2]


def test_the_diagram_is_the_life_in_order_with_the_early_close() -> None:
    block = doc_block("docs/hub.md", "CONNECTING ──► OPEN ──► CLOSING ──► CLOSED")
    first, second, third = block.splitlines()[:3]
    assert first.split(" ──► ") == [state.name for state in ConnectionState]
    for a, b in zip(ConnectionState, list(ConnectionState)[1:], strict=False):
        assert advance(a, b) is b
    # The branch leaves CONNECTING and arrives at CLOSING.
    assert second.index("│") < len("CONNECTING")
    assert second.index("▲") in range(first.index("CLOSING"), first.index("CLOSING") + 7)
    assert advance(ConnectionState.CONNECTING, ConnectionState.CLOSING) is ConnectionState.CLOSING
    assert "closed before it opened" in third


def test_the_table_names_every_state_once() -> None:
    text = (ROOT / "docs" / "hub.md").read_text(encoding="utf-8")
    section = text.split("### Connection states", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([A-Z]+)` \|", section, re.M)
    assert rows == [state.name for state in ConnectionState]
