"""What several subcommands share: loading settings and importing ``module:attribute``."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tempest_ws.exceptions import ConfigurationError
from tempest_ws.settings import WebSocketSettings


def add_env_file_option(parser: argparse.ArgumentParser) -> None:
    """The ``--env-file`` option every subcommand that reads settings takes."""
    parser.add_argument(
        "--env-file",
        default=".env",
        metavar="PATH",
        help="dotenv file read after the environment (default: .env; a missing file is ignored)",
    )


def load_settings(env_file: str) -> WebSocketSettings:
    """``WebSocketSettings`` from the environment and ``env_file``.

    Raises:
        ConfigurationError: a setting fails validation; the message lists every failure
            as ``WS_NAME: reason``.
    """
    try:
        return WebSocketSettings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        lines = [
            f"{'.'.join(str(p) for p in e['loc']) or 'settings'}: {e['msg']}" for e in exc.errors()
        ]
        raise ConfigurationError("invalid settings:\n  " + "\n  ".join(lines)) from None


def import_app(target: str) -> Any:
    """Import ``"module:attribute"`` (attribute may be dotted) with the working directory
    on ``sys.path``, as uvicorn does.

    Raises:
        ConfigurationError: the string is malformed, or the module or attribute is missing.
    """
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigurationError(f"expected 'module:attribute', got {target!r} (e.g. app:app)")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        value: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name.split(".")[0] and exc.name != module_name:
            raise
        where = Path(cwd) / (module_name.replace(".", "/") + ".py")
        raise ConfigurationError(
            f"cannot import module {module_name!r} (looked for {where})"
        ) from None
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise ConfigurationError(
                f"module {module_name!r} has no attribute {attribute!r}"
            ) from None
    return value
