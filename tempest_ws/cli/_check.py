"""``tempest-ws check``: validate the ``WS_*`` settings and warn on unsafe combinations.

`review()` is a pure function of the settings, so every warning is unit-tested
without a process; the command only loads, prints and picks the exit status.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from tempest_ws.cli._common import add_env_file_option, load_settings
from tempest_ws.exceptions import ConfigurationError
from tempest_ws.router.auth import jwt_bearer_resolver
from tempest_ws.settings import WebSocketSettings

MASK = "********"
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain"})


@dataclass(frozen=True)
class Finding:
    """One thing ``check`` reports: an ``error`` stops the app from working as configured,
    a ``warning`` works but is unsafe outside development."""

    level: Literal["error", "warning"]
    setting: str
    message: str


def masked_url(url: str) -> str:
    """``url`` with its password (and a user name standing alone, which Redis reads as a
    password) replaced by ``********``."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    user = parts.username if parts.password is not None else None
    credentials = f"{user}:{MASK}" if user else MASK
    host = parts.hostname or ""
    netloc = f"{credentials}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def effective_configuration(settings: WebSocketSettings) -> dict[str, str]:
    """Every setting as text, secrets masked (the Redis URL keeps all but its password)."""
    shown: dict[str, str] = {}
    for name in type(settings).model_fields:
        value: Any = getattr(settings, name)
        if name == "WS_REDIS_URL" and isinstance(value, SecretStr):
            shown[name] = masked_url(value.get_secret_value())
        elif isinstance(value, SecretStr):
            shown[name] = MASK
        elif isinstance(value, list):
            shown[name] = ",".join(str(v) for v in value) or "(empty)"
        elif value is None:
            shown[name] = "(unset)"
        else:
            shown[name] = str(value)
    return shown


def _is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _redis_findings(url: str) -> list[Finding]:
    parts = urlsplit(url)
    if parts.scheme == "unix" or _is_loopback(parts.hostname or ""):
        return []
    found: list[Finding] = []
    if parts.password is None and parts.username is None:
        found.append(
            Finding(
                "warning",
                "WS_REDIS_URL",
                "Redis outside loopback without a password: "
                "anyone who reaches it can read and publish every message "
                "(redis://:PASSWORD@host or an ACL user)",
            )
        )
    if parts.scheme != "rediss":
        found.append(
            Finding(
                "warning",
                "WS_REDIS_URL",
                "Redis outside loopback without TLS: messages "
                "and the password cross the network in clear (use rediss://)",
            )
        )
    return found


def review(settings: WebSocketSettings) -> list[Finding]:
    """What ``check`` reports about ``settings``, errors first."""
    found: list[Finding] = []
    try:  # the resolver's own checks: the secret's length, the key, the algorithms
        jwt_bearer_resolver(settings)
    except ConfigurationError as exc:
        names = ("WS_JWT_SECRET", "WS_JWT_PUBLIC_KEY")
        setting = next((n for n in names if n in exc.reason), "WS_JWT_ALGORITHMS")
        found.append(Finding("error", setting, exc.reason))
    if not settings.WS_ALLOWED_ORIGINS:
        found.append(
            Finding(
                "warning",
                "WS_ALLOWED_ORIGINS",
                "empty: any web page may open a connection; list your sites' origins",
            )
        )
    elif "*" in settings.WS_ALLOWED_ORIGINS:
        found.append(
            Finding(
                "warning",
                "WS_ALLOWED_ORIGINS",
                "'*' allows every web page; list your sites' origins",
            )
        )
    if settings.WS_ALLOW_QUERY_TOKEN:
        found.append(
            Finding(
                "warning",
                "WS_ALLOW_QUERY_TOKEN",
                "on: '?token=' puts tokens in "
                "URLs that proxies and load balancers log (this process redacts "
                "its own logs); turn it off once clients use the bearer "
                "subprotocol",
            )
        )
    if settings.WS_HISTORY_TOPICS:
        found.append(
            Finding(
                "warning",
                "WS_HISTORY_TOPICS",
                "history replays a topic's past "
                "messages to whoever subscribes: the hub needs a "
                "topic_authorizer that admits only the topic's members",
            )
        )
    if settings.WS_REDIS_URL is not None:
        found.extend(_redis_findings(settings.WS_REDIS_URL.get_secret_value()))
    if "*" in settings.WS_TRUSTED_PROXIES:
        found.append(
            Finding(
                "warning",
                "WS_TRUSTED_PROXIES",
                "'*' lets any client choose the address that WS_MAX_CONNECTIONS_PER_IP counts",
            )
        )
    return sorted(found, key=lambda f: f.level != "error")


def add_parser(commands: Any) -> None:
    """Register ``check`` on the subcommand table."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "check",
        help="validate WS_* settings and .env; print them with secrets masked",
        description="Validate the WS_* settings (environment and --env-file), print the "
        "effective configuration with secrets masked, and report errors and unsafe "
        "combinations. Exit status: 0 no errors, 1 warnings with --strict, 2 errors.",
    )
    add_env_file_option(parser)
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument("--quiet", action="store_true", help="only the findings")
    parser.set_defaults(handler=check_command)


def check_command(args: argparse.Namespace) -> int:
    """Print the configuration and the findings; the exit status as documented."""
    settings = load_settings(args.env_file)
    out = sys.stdout
    if not args.quiet:
        shown = effective_configuration(settings)
        width = max(len(name) for name in shown)
        out.write("".join(f"{name:<{width}}  {value}\n" for name, value in shown.items()))
        out.write("\n")
    found = review(settings)
    for finding in found:
        out.write(f"{finding.level}: {finding.setting}: {finding.message}\n")
    errors = sum(f.level == "error" for f in found)
    out.write(f"{errors} error(s), {len(found) - errors} warning(s)\n")
    if errors:
        return 2
    return 1 if args.strict and found else 0
