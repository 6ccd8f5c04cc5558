"""``tempest-ws run``: uvicorn with the options the settings call for.

The point of the command is what it turns off: uvicorn's defaults accept 16 MiB frames,
negotiate permessage-deflate (a small compressed frame can inflate past the limit) and
send their own protocol pings. ``run`` applies
[`tempest_ws.uvicorn_options()`][tempest_ws.uvicorn_options] on top
of the usual host/port/workers/reload flags, so a plain command line is a safe one.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from tempest_ws.cli._common import add_env_file_option, load_settings
from tempest_ws.exceptions import MissingDependencyError
from tempest_ws.router.server import uvicorn_options


def add_parser(commands: Any) -> None:
    """Register ``run`` on the subcommand table."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "run",
        help="serve an app under uvicorn with the safe WebSocket options",
        description="Serve APP (module:attribute) under uvicorn with ws_max_size = "
        "WS_MAX_MESSAGE_BYTES, permessage-deflate off and uvicorn's protocol pings off "
        "(the envelope heartbeat decides liveness).",
    )
    parser.add_argument("app", help="the ASGI app as module:attribute, e.g. app:app")
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="bind port (default: 8000)")
    parser.add_argument("--workers", type=int, default=None, help="worker processes")
    parser.add_argument("--reload", action="store_true", help="restart on code changes")
    parser.add_argument("--factory", action="store_true", help="APP is a factory to call")
    parser.add_argument("--root-path", default="", help="ASGI root_path behind a proxy")
    parser.add_argument(
        "--proxy-headers",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="trust X-Forwarded-* from --forwarded-allow-ips (default: off)",
    )
    parser.add_argument("--forwarded-allow-ips", default=None, help="proxies to trust")
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default: info)")
    parser.add_argument(
        "--timeout-graceful-shutdown",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long shutdown waits for open connections and tasks",
    )
    parser.add_argument(
        "--limit-concurrency", type=int, default=None, help="most connections uvicorn serves"
    )
    parser.add_argument(
        "--backlog", type=int, default=None, help="listen queue (default WS_LISTEN_BACKLOG)"
    )
    add_env_file_option(parser)
    parser.set_defaults(handler=run_command)


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments ``run`` gives ``uvicorn.run`` (the app string excluded)."""
    settings = load_settings(args.env_file)
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "reload": args.reload,
        "factory": args.factory,
        "root_path": args.root_path,
        "proxy_headers": args.proxy_headers,
        "log_level": args.log_level,
        **uvicorn_options(settings),
    }
    if args.workers is not None:
        options["workers"] = args.workers
    for name in (
        "forwarded_allow_ips",
        "timeout_graceful_shutdown",
        "limit_concurrency",
        "backlog",
    ):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    return options


def run_command(args: argparse.Namespace) -> int:
    """Serve the app until uvicorn stops; 0 on a clean stop."""
    options = server_options(args)
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("uvicorn", "server") from None
    cwd = os.getcwd()
    if cwd not in sys.path:  # as the uvicorn command does (--app-dir .)
        sys.path.insert(0, cwd)
    uvicorn.run(args.app, **options)
    return 0
