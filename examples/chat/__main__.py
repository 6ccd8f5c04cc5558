"""``python -m examples.chat [--host H] [--port P]``: run the chat demo under uvicorn.

Host and port default to 127.0.0.1:8000 and can be set with ``CHAT_HOST`` /
``CHAT_PORT`` or the command-line options (which win). ``WS_*`` variables (and ``.env``)
configure tempest_ws as in any application.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
from collections.abc import Sequence

from tempest_ws.server import run

logger = logging.getLogger("examples.chat")


def _port(value: str) -> int:
    port = int(value)
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, not {port}")
    return port


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options, with defaults from ``CHAT_HOST``/``CHAT_PORT``."""
    parser = argparse.ArgumentParser(prog="python -m examples.chat", description=__doc__)
    parser.add_argument("--host", default=os.environ.get("CHAT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=_port, default=os.environ.get("CHAT_PORT", "8000"))
    parser.add_argument("--log-level", default=os.environ.get("CHAT_LOG_LEVEL", "info"))
    return parser.parse_args(argv)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def main(argv: Sequence[str] | None = None) -> None:
    """Run the demo until interrupted."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not _is_loopback(args.host):
        logger.warning(
            "serving on %s: /api/login hands out tokens for any name; keep the demo local",
            args.host,
        )
    from .app import app  # after logging is configured: building it may log a warning

    logger.info("chat demo on http://%s:%d", args.host, args.port)
    run(app, settings=app.state.settings, host=args.host, port=args.port, log_level=args.log_level)


if __name__ == "__main__":
    main()
