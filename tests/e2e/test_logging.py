"""Query-token redaction on uvicorn's loggers."""

from __future__ import annotations

import logging

from tempest_ws.router._redaction import QueryTokenRedactor, install_query_token_redaction, redact


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


def test_encoded_and_any_case_query_names_are_redacted() -> None:
    for key in ("%74oken", "TOKEN", "%54%4f%4b%45%4e", "Access_Token", "tok%65n"):
        line = f'"WebSocket /ws?a=1&{key}=s3cr3t&b=2" [accepted]'
        assert redact(line) == f'"WebSocket /ws?a=1&{key}=[redacted]&b=2" [accepted]'
    assert redact("/ws?tokens=keep&my_token=keep") == "/ws?tokens=keep&my_token=keep"


def _record(msg: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", logging.DEBUG, __file__, 1, msg, args, None)


def test_a_header_name_and_value_in_separate_arguments_are_redacted() -> None:
    for name, value in (
        ("Authorization", "Bearer s3cr3t"),
        ("sec-websocket-protocol", "bearer, s3cr3t"),
    ):
        record = _record("< %s: %s", name, value)
        assert QueryTokenRedactor().filter(record)
        assert "s3cr3t" not in record.getMessage()
        assert record.getMessage().startswith(f"< {name}: ")
    untouched = _record("< %s: %s", "Host", "example.com")
    assert QueryTokenRedactor().filter(untouched)
    assert untouched.args == ("Host", "example.com")


def test_data_frame_payloads_are_replaced_by_their_size() -> None:
    from websockets.frames import Frame, Opcode

    record = _record("< %s", Frame(Opcode.TEXT, b'{"data":{"token":"s3cr3t"}}'))
    assert QueryTokenRedactor().filter(record)
    assert record.getMessage() == "< TEXT [redacted] [27 bytes]"
    ping = _record("< %s", Frame(Opcode.PING, b"abc"))
    assert QueryTokenRedactor().filter(ping)
    assert "abc" in ping.getMessage()
