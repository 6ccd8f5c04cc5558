"""The fenced code blocks of README.md and docs/*.md, found by file and first line.

A test that runs a block the docs show inline (rather than an include of a file under
``docs_src/`` or ``examples/``) fetches it with :func:`doc_block`, naming the block by
its page and first line; ``tests/docs/test_docs_blocks.py`` reads those calls to know which
blocks the suite runs, and fails on a block nobody runs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>```+|~~~+)\s*(?P<lang>[^\s`]*)")
INCLUDE = re.compile(r'^--8<--\s+"(?P<path>[^":]+)(?::(?P<section>[\w-]+))?"$')


@dataclass(frozen=True)
class Block:
    """One fenced block: where it is, its language and its text (indent removed)."""

    page: str
    line: int
    lang: str
    text: str

    @property
    def first(self) -> str:
        """The first non-blank line, stripped: the block's name in the registry."""
        return next((line.strip() for line in self.text.splitlines() if line.strip()), "")

    @property
    def includes(self) -> list[tuple[str, str | None]]:
        """``(path, section)`` of each ``--8<--`` line, when the block is only includes."""
        lines = [line.strip() for line in self.text.splitlines() if line.strip()]
        found = [INCLUDE.match(line) for line in lines]
        if not lines or not all(found):
            return []
        return [(m["path"], m["section"]) for m in found if m is not None]


def pages() -> list[Path]:
    """README.md and every page of the docs."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page``, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start, indent, fence = i, len(match["indent"]), match["fence"]
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][indent:] if lines[i][:indent].isspace() else lines[i])
            i += 1
        name = page.relative_to(ROOT).as_posix()
        found.append(Block(name, start + 1, match["lang"], "\n".join(body) + "\n"))
        i += 1
    return found


def all_blocks() -> list[Block]:
    """Every fenced block of README.md and docs/*.md."""
    return [block for page in pages() for block in blocks(page)]


def doc_blocks(page: str, first: str) -> list[str]:
    """The texts of every block of ``page`` whose first line is ``first``, in order."""
    return [b.text for b in blocks(ROOT / page) if b.first == first.strip()]


def doc_block(page: str, first: str) -> str:
    """The text of the block of ``page`` (``"docs/x.md"``) whose first line is ``first``.

    Raises:
        LookupError: no such block (it was edited: check the test still runs what the
            page shows, then update ``first``), or several.
    """
    matches = doc_blocks(page, first)
    if len(matches) != 1:
        raise LookupError(f"{page}: {len(matches)} blocks start with {first!r}")
    return matches[0]
