"""Docstrings use mkdocstrings cross-references, and a raw Sphinx role fails the docs build."""

from __future__ import annotations

import importlib.util
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPHINX_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|ref|const):`")


def test_no_docstring_has_a_sphinx_role() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "tempest_ws").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if SPHINX_ROLE.search(line)
    ]
    assert found == [], "write [`Name`][tempest_ws.module.Name] instead"


def test_the_docs_hook_warns_on_a_raw_role(caplog: pytest.LogCaptureFixture) -> None:
    spec = importlib.util.spec_from_file_location("hook", ROOT / "scripts" / "mkdocs_raw_roles.py")
    assert spec is not None
    assert spec.loader is not None
    hook = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hook)
    page = SimpleNamespace(file=SimpleNamespace(src_path="api.md"))
    with caplog.at_level(logging.WARNING, logger="mkdocs.hooks.raw_roles"):
        clean = "<p>See <a href='#x'><code>WebSocketHub</code></a>.</p>"
        assert hook.on_page_content(clean, page=page) == clean
        assert caplog.records == []
        hook.on_page_content(
            "<p>See :class:<code>~tempest_ws.hub.WebSocketHub</code>.</p>", page=page
        )
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
    assert "api.md" in caplog.records[0].getMessage()
