"""Follow a history topic across disconnects and restarts: store positions, reload on gaps.

The client resumes by itself after a disconnect: it subscribes again with the position
of the last message it received, and the server replays what was missed. This program
adds the two things only the application can do:

- it stores ``client.positions`` in a file after handling each message, and passes the
  file's content back as ``positions=`` when it starts, so a restarted process resumes
  where the previous one stopped (at-least-once: a crash between handling a message and
  storing its position handles that message again);
- it reloads the topic from its source of truth when the server answers
  ``recovered: false`` (the history could not fill the gap, or this is the first run).

Run it against a tempest_ws server whose topic keeps history::

    python -m examples.history_client --url ws://127.0.0.1:8000/ws --token "$TOKEN" \\
        --topic chat:1 --state positions.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from tempest_ws import WSEnvelope
from tempest_ws.client import Position, WebSocketClient

logger = logging.getLogger("examples.history_client")


class PositionFile:
    """Positions in a JSON file: ``{"chat:1": [42, "660eb6a2c74eed2bcba62"]}``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Position]:
        """What the last run stored; empty when there is no file yet."""
        if not self.path.exists():
            return {}
        stored = json.loads(self.path.read_text())
        return {topic: Position(offset, epoch) for topic, (offset, epoch) in stored.items()}

    def save(self, positions: Mapping[str, Position]) -> None:
        """Replace the file in one step, so a crash never leaves half of it."""
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps({topic: list(p) for topic, p in positions.items()}))
        os.replace(partial, self.path)


async def follow(
    client: WebSocketClient,
    topic: str,
    *,
    store: PositionFile,
    apply: Callable[[WSEnvelope], Awaitable[None]],
    reload: Callable[[str], Awaitable[None]],
    limit: int | None = None,
) -> None:
    """Subscribe to ``topic`` and handle its messages until ``limit`` were applied."""
    await client.subscribe(topic)  # carries the stored position, if there is one
    applied = 0
    async for envelope in client:  # client.positions now counts this envelope
        if envelope.type == "recovery":
            if not envelope.data["recovered"]:
                await reload(envelope.data["topic"])  # a gap: rebuild from the database
        elif envelope.type in ("ack", "error"):
            continue  # answers to our own operations
        else:
            await apply(envelope)
            applied += 1
        store.save(client.positions)  # after handling: at-least-once across restarts
        if limit is not None and applied >= limit:
            return


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Follow a history topic, resuming.")
    parser.add_argument("--url", default="ws://127.0.0.1:8000/ws")
    parser.add_argument("--token", required=True)
    parser.add_argument("--topic", default="chat:1")
    parser.add_argument("--state", type=Path, default=Path("positions.json"))
    args = parser.parse_args(argv)
    store = PositionFile(args.state)

    async def apply(envelope: WSEnvelope) -> None:
        logger.info("%s: %s", envelope.type, envelope.data)

    async def reload(topic: str) -> None:
        logger.info("reloading %s from the source of truth", topic)

    async with WebSocketClient(args.url, token=args.token, positions=store.load()) as client:
        await follow(client, args.topic, store=store, apply=apply, reload=reload)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    asyncio.run(main())
