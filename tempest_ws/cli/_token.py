"""``tempest-ws token``: a development JWT that the app's ``jwt_bearer_resolver`` accepts.

It signs with ``WS_JWT_SECRET`` and the first HMAC algorithm of ``WS_JWT_ALGORITHMS``,
adding ``aud``/``iss`` when those settings are set, so the token passes the same checks
as production tokens. Settings that the resolver would refuse are refused here too.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from typing import Any

import jwt

from tempest_ws.cli._common import add_env_file_option, load_settings
from tempest_ws.exceptions import ConfigurationError
from tempest_ws.router.auth import jwt_bearer_resolver

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str) -> float:
    """Seconds in ``"90"``, ``"30s"``, ``"15m"``, ``"1h"`` or ``"2d"``.

    Raises:
        ConfigurationError: anything else, or zero.
    """
    match = _DURATION.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise ConfigurationError(f"--ttl {text!r}: use a positive number with s, m, h or d")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _claim(text: str) -> tuple[str, Any]:
    name, sep, raw = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(raw)
    except ValueError:
        return name, raw


def add_parser(commands: Any) -> None:
    """Register ``token`` on the subcommand table."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "token",
        help="print a development JWT signed with WS_JWT_SECRET",
        description="Print a JWT for SUB signed with WS_JWT_SECRET (HS256/384/512), with "
        "exp = now + TTL and aud/iss from WS_JWT_AUDIENCE/WS_JWT_ISSUER when set. "
        "For development and tests: production tokens come from your identity provider.",
    )
    parser.add_argument("--sub", required=True, help="the subject (user id) of the token")
    parser.add_argument("--ttl", default="1h", help="lifetime: 90, 30s, 15m, 1h, 2d (default: 1h)")
    parser.add_argument(
        "--claim",
        action="append",
        type=_claim,
        default=[],
        metavar="NAME=VALUE",
        help="an extra claim; VALUE is parsed as JSON when it is JSON (repeatable)",
    )
    add_env_file_option(parser)
    parser.set_defaults(handler=token_command)


def make_development_token(args: argparse.Namespace) -> str:
    """The token ``token`` prints for ``args``.

    Raises:
        ConfigurationError: no usable ``WS_JWT_SECRET``, public-key algorithms only, or a
            bad ``--ttl``.
    """
    settings = load_settings(args.env_file)
    hmac = [a for a in settings.WS_JWT_ALGORITHMS if a.startswith("HS")]
    if not hmac:
        raise ConfigurationError(
            "WS_JWT_ALGORITHMS has no HMAC algorithm: sign tokens with your private key instead"
        )
    jwt_bearer_resolver(settings, algorithms=hmac)  # the resolver's own checks (secret length)
    if settings.WS_JWT_SECRET is None:  # pragma: no cover - the resolver refused already
        raise ConfigurationError("WS_JWT_SECRET is not set")
    now = int(time.time())
    payload: dict[str, Any] = {"sub": args.sub, "iat": now}
    payload["exp"] = now + int(parse_duration(args.ttl))
    if settings.WS_JWT_AUDIENCE:
        payload["aud"] = settings.WS_JWT_AUDIENCE
    if settings.WS_JWT_ISSUER:
        payload["iss"] = settings.WS_JWT_ISSUER
    payload.update(dict(args.claim))
    return jwt.encode(payload, settings.WS_JWT_SECRET.get_secret_value(), algorithm=hmac[0])


def token_command(args: argparse.Namespace) -> int:
    """Write the token and a newline to stdout."""
    sys.stdout.write(make_development_token(args) + "\n")
    return 0
