"""The uvicorn WebSocket protocols the security tests run against.

Every test that depends on what the server's WebSocket layer does runs once per
protocol installed here: ``websockets-sansio`` (uvicorn's default), the deprecated
``websockets`` one, and ``wsproto`` when that package is installed (it is not a
dependency of tempest_ws; ``uvicorn[standard]`` does not pull it in).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

_LEGACY_WARNINGS = (
    pytest.mark.filterwarnings("ignore::uvicorn.config.UvicornDeprecationWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),  # websockets.legacy
)

WS_PROTOCOLS = [
    pytest.param("websockets-sansio", id="websockets-sansio"),
    pytest.param("websockets", id="websockets", marks=_LEGACY_WARNINGS),
]
if importlib.util.find_spec("wsproto") is not None:
    WS_PROTOCOLS.append(pytest.param("wsproto", id="wsproto"))

UNSAFE_OPTIONS: dict[str, Any] = {"ws_max_size": 16 * 1024 * 1024, "ws_per_message_deflate": True}
"""uvicorn's own defaults, spelled out: what a plain ``uvicorn app:app`` runs with."""
