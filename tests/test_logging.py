"""Query-token redaction on uvicorn's loggers."""

from __future__ import annotations

import logging

from tempest_ws._logging import QueryTokenRedactor, install_query_token_redaction, redact


def test_redact_values_only() -> None:
    line = '127.0.0.1:5 - "WebSocket /ws?room=1&token=eyJ.abc.def&x=2" [accepted]'
    assert redact(line) == '127.0.0.1:5 - "WebSocket /ws?room=1&token=[redacted]&x=2" [accepted]'
    assert redact("/ws?access_token=abc") == "/ws?access_token=[redacted]"
    assert redact("/ws?notatoken=abc") == "/ws?notatoken=abc"


def test_filter_rewrites_message_and_args() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s"',
        ("ip", "/ws?token=s3cr3t"),
        None,
    )
    assert QueryTokenRedactor().filter(record)
    assert "s3cr3t" not in record.getMessage()


def test_install_is_idempotent() -> None:
    install_query_token_redaction(("tempest_ws.test.redaction",))
    install_query_token_redaction(("tempest_ws.test.redaction",))
    target = logging.getLogger("tempest_ws.test.redaction")
    assert sum(isinstance(f, QueryTokenRedactor) for f in target.filters) == 1


def test_bearer_headers_are_redacted() -> None:
    line = "< sec-websocket-protocol: bearer, eyJhbGciOi.abc.def"
    assert "eyJ" not in redact(line)
    assert "eyJ" not in redact("Authorization: Bearer eyJhbGciOi.abc.def")
    assert "eyJ" not in redact("('Sec-WebSocket-Protocol', 'bearer, eyJhbGciOi.abc.def')")
    assert redact("sec-websocket-protocol: chat") == "sec-websocket-protocol: chat"
