"""Keep tokens and message bodies out of the server's logs.

uvicorn logs every WebSocket handshake with its full path and query string, so a
``?token=`` would land in log files. At DEBUG level the websockets library (which
uvicorn hands its ``uvicorn.error`` logger) also logs every request header, as two
record arguments (``"< %s: %s", name, value``), and every frame with the start and end
of its payload. `QueryTokenRedactor` rewrites such records on the
``uvicorn.access`` and ``uvicorn.error`` loggers before any handler sees them, whatever
their level:

- a query parameter whose name decodes to ``token`` or ``access_token`` in any case
  (``?token=``, ``?%74oken=``, ``?TOKEN=``: a superset of what the router accepts) keeps
  its name and loses its value;
- the credentials after ``Authorization: Bearer`` and after ``bearer,`` in
  ``Sec-WebSocket-Protocol`` are replaced, judged on the formatted message, so a header
  name and value passed as separate arguments are caught;
- the payload of a data frame (text, binary, continuation) is replaced by its size.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

__all__ = ["QueryTokenRedactor", "install_query_token_redaction", "redact"]

REDACTED = "[redacted]"
_TOKEN_NAMES = frozenset({"token", "access_token"})
_QUERY_PARAM = re.compile(r"([?&;])([^=&;?#\s\"']*)=([^&;#\s\"']*)")
_BEARER_HEADER = re.compile(
    r"((?:sec-websocket-protocol|authorization)[\"']?\s*[:,]\s*[\"']?bearer[\s,]+)"
    r"[^\s\"',\]\)]+",
    re.IGNORECASE,
)
_DATA_OPCODES = frozenset({"TEXT", "BINARY", "CONT"})


def _query_param(match: re.Match[str]) -> str:
    if unquote_plus(match.group(2)).strip().lower() in _TOKEN_NAMES:
        return f"{match.group(1)}{match.group(2)}={REDACTED}"
    return match.group(0)


def redact(text: str) -> str:
    """Replace query-token values and bearer header values in ``text``."""
    if "=" in text:
        text = _QUERY_PARAM.sub(_query_param, text)
    return _BEARER_HEADER.sub(rf"\1{REDACTED}", text)


def _frame_summary(value: object) -> str | None:
    """``TEXT [redacted] [N bytes]`` for a websockets data frame, else ``None``."""
    opcode = getattr(value, "opcode", None)
    data = getattr(value, "data", None)
    name = getattr(opcode, "name", None)
    if name not in _DATA_OPCODES or not isinstance(data, bytes | bytearray | memoryview):
        return None
    return f"{name} {REDACTED} [{len(data)} bytes]"


class QueryTokenRedactor(logging.Filter):
    """A logging filter that redacts tokens and frame payloads from a record.

    The record's message is formatted with its arguments, redacted as a whole, and
    stored back without arguments when anything changed (records without secrets keep
    their arguments untouched).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            summaries = [_frame_summary(a) for a in args]
            if any(s is not None for s in summaries):
                args = record.args = tuple(
                    a if s is None else s for a, s in zip(args, summaries, strict=True)
                )
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):  # malformed: redact what is there
            if isinstance(record.msg, str):
                record.msg = redact(record.msg)
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        return True


def install_query_token_redaction(
    logger_names: tuple[str, ...] = ("uvicorn.access", "uvicorn.error"),
) -> None:
    """Attach one `QueryTokenRedactor` to each named logger (idempotent)."""
    for name in logger_names:
        target = logging.getLogger(name)
        if not any(isinstance(f, QueryTokenRedactor) for f in target.filters):
            target.addFilter(QueryTokenRedactor())
