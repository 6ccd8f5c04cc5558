"""A mkdocs hook: a Sphinx role left in a docstring fails the build.

mkdocstrings renders Markdown, not reStructuredText, so ``:class:`X``` would reach the
page as literal text. Cross-references are written ``[`X`][tempest_ws.module.X]``.
"""

from __future__ import annotations

import logging
import re
from typing import Any

log = logging.getLogger("mkdocs.hooks.raw_roles")
RAW_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj|ref|const):(?:<code>|`)")


def on_page_content(html: str, page: Any, **_: Any) -> str:
    """Warn (an error under ``--strict``) for every raw role on ``page``."""
    for match in RAW_ROLE.finditer(html):
        start = max(match.start() - 60, 0)
        log.warning(
            "%s: raw Sphinx role in the rendered page: %r",
            page.file.src_path,
            html[start : match.end() + 40],
        )
    return html
