"""Run the app under uvicorn with the limits the settings describe.

uvicorn buffers a whole message before the application sees it. Giving it the same
``ws_max_size`` as ``WS_MAX_MESSAGE_BYTES`` makes it refuse oversized frames (close 1009)
before buffering them, and turning permessage-deflate off stops a small compressed frame
from inflating past the limit in memory (and saves CPU on every broadcast).
"""

from __future__ import annotations

from typing import Any

from tempest_ws.exceptions import MissingDependencyError
from tempest_ws.settings import WebSocketSettings

__all__ = ["run", "uvicorn_options"]


def uvicorn_options(settings: WebSocketSettings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run``/``uvicorn.Config`` matching ``settings``.

    uvicorn's own protocol-level keepalive is turned off: the envelope heartbeat decides
    liveness, so a silent peer is closed 4408 on its deadline instead of 1011 after
    uvicorn's 20 s + 20 s. The listen queue is ``WS_LISTEN_BACKLOG`` long (uvicorn's
    default is 2,048): a short queue lets a reconnect storm converge (see the scaling
    guide). It applies where uvicorn opens the socket; a socket passed to uvicorn, or
    opened by gunicorn (``--backlog``), keeps the queue it was given.
    """
    return {
        "ws_max_size": settings.WS_MAX_MESSAGE_BYTES,
        "ws_per_message_deflate": False,
        "ws_ping_interval": None,
        "backlog": settings.WS_LISTEN_BACKLOG,
    }


def run(
    app: Any,
    *,
    settings: WebSocketSettings,
    host: str = "127.0.0.1",
    port: int = 8000,
    **uvicorn_kwargs: Any,
) -> None:
    """``uvicorn.run(app, ...)`` with `uvicorn_options()` applied (explicit kwargs win)."""
    try:
        import uvicorn
    except ImportError:
        raise MissingDependencyError("uvicorn", "server") from None
    uvicorn.run(app, host=host, port=port, **{**uvicorn_options(settings), **uvicorn_kwargs})
