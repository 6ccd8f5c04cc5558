"""Requests of the envelope client: send with a ``request_id``, await the reply.

`Requester.ask()` writes (or queues) an envelope with a fresh ``request_id`` and returns
the first envelope carrying it back, whatever its ``type``. `outbound_data()` turns a
pydantic model given as ``data`` into JSON-ready data, and `reply_into()` turns a reply
into a ``response_model``: an ``error`` envelope raises
[`RequestError`][tempest_ws.exceptions.RequestError], a reply whose ``data`` does not
validate raises it with the code ``invalid_answer``. Requires the ``client`` extra
(websockets).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tempest_ws.client._engine import Engine
from tempest_ws.client._pending import PendingRequests
from tempest_ws.client._subscriptions import request_error
from tempest_ws.exceptions import RequestError, RequestTimeoutError
from tempest_ws.wire.envelope import ACK, ERROR, WSEnvelope, encode_envelope

__all__ = ["ModelT", "Requester", "outbound_data", "reply_into"]

ModelT = TypeVar("ModelT", bound=BaseModel)


def outbound_data(data: Any) -> Any:
    """``data`` as sent: ``{}`` for ``None``, a model dumped in JSON mode by alias."""
    if data is None:
        return {}
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json", by_alias=True)
    return data


def reply_into(reply: WSEnvelope, model: type[ModelT]) -> ModelT:
    """Validate ``reply``'s ``data`` into ``model``.

    An ``ack`` without ``data`` counts as ``{}``, so a model whose fields all have
    defaults accepts it.

    Raises:
        RequestError: ``reply`` is an ``error`` envelope (its code), or its ``data``
            does not validate (``invalid_answer``, with pydantic's
            ``ValidationError`` as the ``__cause__``).
    """
    if reply.type == ERROR:
        raise request_error(reply)
    data = {} if reply.type == ACK and reply.data is None else reply.data
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        first = errors[0] if errors else {"loc": (), "msg": "invalid"}
        where = ".".join(str(part) for part in first["loc"]) or "data"
        raise RequestError(
            f"the {reply.type!r} reply does not validate into {model.__name__}: "
            f"{len(errors)} error(s), first at {where}: {first['msg']}",
            code="invalid_answer",
            envelope=reply,
        ) from exc


class Requester:
    """Sends requests through ``engine``; ``requests`` holds those awaiting a reply."""

    def __init__(self, engine: Engine[WSEnvelope], requests: PendingRequests) -> None:
        self._engine = engine
        self._requests = requests

    async def ask(
        self,
        type: str,
        data: Any,
        *,
        timeout: float,  # noqa: ASYNC109 - the documented API, applied with asyncio.timeout
    ) -> WSEnvelope:
        """Send ``type`` with ``data`` and a fresh ``request_id``; return the reply.

        ``timeout`` covers queueing and waiting: when it expires the request is taken
        out of the offline queue if still there and `RequestTimeoutError` is raised.
        """
        request_id = uuid.uuid4().hex
        frame = encode_envelope(
            {"type": type, "data": outbound_data(data), "request_id": request_id}
        )
        waiter: asyncio.Future[WSEnvelope] = self._requests.open(request_id)
        try:
            async with asyncio.timeout(timeout):
                await self._engine.send(frame, request_id)
                return await waiter
        except TimeoutError:
            self._engine.unqueue(frame, request_id)
            raise RequestTimeoutError(
                f"no reply to {type!r} within {timeout:.1f}s", code="request_timeout"
            ) from None
        finally:
            self._requests.close(request_id)
            session = self._engine.session
            if session is not None:
                session.inflight.discard(request_id)
