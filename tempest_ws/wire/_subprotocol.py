"""The WebSocket subprotocol that carries a token in the handshake.

A browser cannot set an ``Authorization`` header on a WebSocket, but it can offer
subprotocols: a client offers ``Sec-WebSocket-Protocol: bearer, <token>`` and the server
answers with ``bearer`` only. The router reads it (``router/auth.py``), the Python
client offers it (``client/_auth.py``).
"""

from __future__ import annotations

from typing import Final

__all__ = ["BEARER_SUBPROTOCOL"]

BEARER_SUBPROTOCOL: Final = "bearer"
"""The subprotocol name that carries the token: ``Sec-WebSocket-Protocol: bearer, <jwt>``."""
