"""The recipe in docs/testing.md: a handler tested with the helpers, as a user would."""

from __future__ import annotations

import pytest

from tempest_ws.testing import FakeTokens, HubProbe, live_server
from tests.helpers.support import build_app, make_settings

pytestmark = pytest.mark.e2e


# --8<-- [start:recipe]
async def test_publish_reaches_only_the_room() -> None:
    tokens = FakeTokens()  # opaque tokens and a resolver, no JWT needed
    settings = make_settings()
    app, hub = build_app(settings, resolver=tokens.resolver)
    with HubProbe(hub) as probe:  # records who each hub delivery was queued for
        async with (
            live_server(app, settings=settings) as server,
            server.connect(tokens.issue("ann")) as ann,  # hello already read
            server.connect(tokens.issue("bob")) as bob,
            server.connect(tokens.issue("cid")) as cid,
        ):
            for client in (ann, bob):
                await client.send_envelope("subscribe", {"topic": "room"})
                await client.expect("subscribed")  # answers pings while it waits
            await cid.send_envelope("publish", {"topic": "room", "payload": "hi"})
            assert (await bob.expect("published")).data == "hi"
            [delivery] = await probe.wait_for("published")
            assert delivery.users == {"ann", "bob"}  # never cid: not in the room


# --8<-- [end:recipe]
