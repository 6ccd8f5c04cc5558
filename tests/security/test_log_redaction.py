"""No token reaches any log record, even with uvicorn at DEBUG.

uvicorn runs at ``log_level="debug"``, so the websockets library logs every handshake
header and every frame on ``uvicorn.error``. Every record of every logger is captured
(the root logger and each logger that does not propagate, all set to DEBUG) while
clients send tokens every way the router reads them, and a few it does not:
``?token=``, ``?%74oken=`` (accepted: the query parser decodes names), ``?TOKEN=``,
``Authorization: Bearer``, ``Sec-WebSocket-Protocol: bearer, <jwt>`` and an in-band
``auth.refresh``. No token string may appear in any formatted record (but those of the
test's own client, on ``websockets.client``).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tempest_ws.testing import serve
from tests.helpers.hardening import LogCapture, build_router_app, next_of_type
from tests.helpers.support import make_settings, token, ws_url
from tests.security._servers import WS_PROTOCOLS

pytestmark = pytest.mark.e2e


@contextlib.contextmanager
def every_record() -> Iterator[LogCapture]:
    """Capture every record of every logger at DEBUG; restore levels and handlers after."""
    capture = LogCapture()
    manager = logging.Logger.manager
    loggers = [logging.getLogger()] + [
        logger for logger in manager.loggerDict.values() if isinstance(logger, logging.Logger)
    ]
    levels = {logger: logger.level for logger in loggers}
    attached = [logging.getLogger()] + [lg for lg in loggers[1:] if not lg.propagate]
    for logger in loggers:
        logger.setLevel(logging.DEBUG)
    for logger in attached:
        logger.addHandler(capture)
    try:
        yield capture
    finally:
        for logger in attached:
            logger.removeHandler(capture)
        for logger, level in levels.items():
            logger.setLevel(level)


@pytest.mark.parametrize("ws", WS_PROTOCOLS)
async def test_no_token_in_any_record_at_debug(ws: str) -> None:
    settings = make_settings()
    app, _, _ = build_router_app(settings)
    tokens = {name: token(name) for name in ("query", "encoded", "upper", "header", "proto")}
    refreshed = token("proto", claims={"jti": "refreshed"})
    async with serve(app, settings=settings, ws=ws, log_level="debug") as base:
        with every_record() as logs:
            url = ws_url(base)
            attempts: list[dict[str, Any]] = [
                {"uri": f"{url}?room=1&token={tokens['query']}"},
                {"uri": f"{url}?%74oken={tokens['encoded']}&x=1"},
                {
                    "uri": f"{url}?TOKEN={tokens['upper']}",
                    "subprotocols": ["bearer", tokens["header"]],
                },
                {"additional_headers": {"Authorization": f"Bearer {tokens['header']}"}},
            ]
            for options in attempts:
                async with connect(options.pop("uri", url), **options) as client:
                    hello = await next_of_type(client, "hello")
                    assert hello["data"]["connection_id"]
            subprotocols = ["bearer", tokens["proto"]]
            async with connect(url, subprotocols=subprotocols) as client:  # type: ignore[arg-type]
                await next_of_type(client, "hello")
                refresh = {"type": "auth.refresh", "data": {"token": refreshed}, "request_id": "r"}
                await client.send(json.dumps(refresh))
                assert (await next_of_type(client, "ack"))["request_id"] == "r"

    # The test's own client logs on websockets.client what it sends: not the server's.
    text = "\n".join(line for line in logs.lines if not line.startswith("websockets.client "))
    # The capture saw the handshake lines and the headers, so the scan means something.
    assert "WebSocket /ws?room=1&token=[redacted]" in text
    assert "?%74oken=[redacted]" in text
    assert "?TOKEN=[redacted]" in text
    assert "authorization: Bearer [redacted]" in text.replace("Authorization", "authorization")
    for name, secret in [*tokens.items(), ("refreshed", refreshed)]:
        assert secret not in text, f"the {name} token leaked"
        assert secret[-24:] not in text, f"the end of the {name} token leaked"
