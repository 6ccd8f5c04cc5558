"""Keep query-string tokens out of server logs.

uvicorn logs every WebSocket handshake with its full path and query string, so a
``?token=`` would land in log files. :class:`QueryTokenRedactor` rewrites such records on
the ``uvicorn.access`` and ``uvicorn.error`` loggers before any handler sees them.
"""

from __future__ import annotations

import logging
import re

__all__ = ["QueryTokenRedactor", "install_query_token_redaction"]

_TOKEN_PARAM = re.compile(r"([?&](?:access_)?token=)[^&\s\"']*", re.IGNORECASE)
# uvicorn's WebSocket layer logs raw handshake headers at DEBUG level.
_BEARER_HEADER = re.compile(
    r"((?:sec-websocket-protocol|authorization)[\"']?\s*[:,]\s*[\"']?bearer[\s,]+)[^\s\"',\]\)]+",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Replace query-token values and bearer header values in ``text``."""
    text = _TOKEN_PARAM.sub(rf"\1{REDACTED}", text)
    return _BEARER_HEADER.sub(rf"\1{REDACTED}", text)


class QueryTokenRedactor(logging.Filter):
    """A logging filter that redacts query tokens from a record's message and arguments."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def install_query_token_redaction(
    logger_names: tuple[str, ...] = ("uvicorn.access", "uvicorn.error"),
) -> None:
    """Attach one :class:`QueryTokenRedactor` to each named logger (idempotent)."""
    for name in logger_names:
        target = logging.getLogger(name)
        if not any(isinstance(f, QueryTokenRedactor) for f in target.filters):
            target.addFilter(QueryTokenRedactor())
