"""The ``tempest-ws`` command line: ``run``, ``token``, ``check`` and ``asyncapi``.

It runs an app with safe server options, mints a development token, checks the settings
and prints the AsyncAPI document.

Each subcommand lives in its own module; `main()` only parses the command line and
dispatches. Everything is written to stdout/stderr through `sys` streams (the
package never prints), and the exit status says what happened: 0 success, 1 a check
found problems (``check --strict``), 2 a usage or configuration error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tempest_ws.cli import _asyncapi, _check, _run, _token
from tempest_ws.exceptions import TempestWSError

__all__ = ["main"]

_DESCRIPTION = """\
tempest-ws: the command line of the tempest_ws WebSocket SDK.

  tempest-ws run app:app          serve an app with the safe uvicorn options
  tempest-ws token --sub ann      a development JWT signed with WS_JWT_SECRET
  tempest-ws check                validate WS_* settings and .env, warn on unsafe ones
  tempest-ws asyncapi app:app     print the app's AsyncAPI document

Settings come from WS_* environment variables and .env (or --env-file).
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tempest-ws",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (_run, _token, _check, _asyncapi):
        module.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tempest-ws`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status instead of exiting, so tests and wrappers can call it.
    A [`TempestWSError`][tempest_ws.exceptions.TempestWSError] (a bad setting, an app that cannot
    be imported, a missing extra) is reported on stderr in one line with status 2.
    """
    args = _parser().parse_args(argv)
    try:
        status: int = args.handler(args)
    except TempestWSError as exc:
        sys.stderr.write(f"tempest-ws {args.command}: {exc}\n")
        return 2
    return status


def entry_point() -> None:
    """The console script: `main()` with the process's arguments, then exit."""
    sys.exit(main())
