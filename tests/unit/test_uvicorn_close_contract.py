"""What the fan-out's first-frame write assumes of uvicorn's websockets-sansio protocol.

The hub's fan-out loop (``hub/_fanout.py``) writes a socket's first frame of a tick
without reading uvicorn's ``close_sent``: it relies on the transport's closing state
and the connection's own. That is right only while every way the protocol sends a
close frame after the handshake on its own also closes the transport in the same method,
the application's ``websocket.close`` (in ``send``, which this library calls only after
the connection left its open state) being the one exception. This test reads the
installed uvicorn's source and fails if a release breaks that, so a change of the lock
cannot silently let frames follow a close frame.
"""

from __future__ import annotations

import ast
import inspect

from uvicorn.protocols.websockets import websockets_sansio_impl as sansio

# Before the handshake answer (no direct writer exists yet), or the application's close.
_EXEMPT = {"handle_connect", "handle_handshake_exception", "send"}


def _methods() -> dict[str, ast.FunctionDef | ast.AsyncFunctionDef]:
    tree = ast.parse(inspect.getsource(sansio.WebSocketsSansIOProtocol))
    [cls] = [node for node in tree.body if isinstance(node, ast.ClassDef)]
    return {
        node.name: node
        for node in cls.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def _sets_close_sent(method: ast.AST) -> bool:
    return any(
        isinstance(node, ast.Assign)
        and any(ast.unparse(target) == "self.close_sent" for target in node.targets)
        and isinstance(node.value, ast.Constant)
        and node.value.value is True
        for node in ast.walk(method)
    )


def _closes_transport(method: ast.AST) -> bool:
    return any(
        isinstance(node, ast.Call) and ast.unparse(node.func) == "self.transport.close"
        for node in ast.walk(method)
    )


def test_every_close_uvicorn_sends_on_its_own_also_closes_the_transport() -> None:
    methods = _methods()
    setting = {name for name, method in methods.items() if _sets_close_sent(method)}
    assert {"keepalive_timeout", "handle_parser_exception", "send"} <= setting
    for name in sorted(setting - _EXEMPT):
        assert _closes_transport(methods[name]), name
    # The peer's close is answered without setting close_sent: the transport closes.
    assert _closes_transport(methods["handle_close"])
    assert _closes_transport(methods["shutdown"])


def test_the_check_sees_a_close_that_leaves_the_transport_open() -> None:
    """The test above can fail: a method that sets ``close_sent`` and leaves the
    transport open is reported."""
    method = ast.parse("def f(self):\n    self.close_sent = True\n    self.transport.write(b'')\n")
    assert _sets_close_sent(method)
    assert not _closes_transport(method)
