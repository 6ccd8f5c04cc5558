"""Attack: subscribe one connection to ever more topics (memory, then a long cleanup).

``WS_MAX_TOPICS_PER_CONNECTION`` caps the topics of one connection. Past it, the
built-in ``subscribe`` (and ``?topics=``) is answered with the error envelope
``topic_limit`` carrying the request's ``request_id``, a log line names the connection,
and nothing is subscribed; the connection stays open with its other topics.
``hub.subscribe`` raises `TopicLimitError`. A connection
at the cap closes and leaves every topic. Real uvicorn, real ``websockets`` clients.
"""

from __future__ import annotations

import logging

import pytest

from tempest_ws import TopicLimitError, WebSocketHub, allow_any_topic
from tempest_ws.hub._membership import CLEANUP_BATCH
from tempest_ws.testing import serve
from tests.helpers.realtime_support import open_tab, realtime_app
from tests.helpers.support import make_settings, until

pytestmark = pytest.mark.e2e

CAP = 8


async def test_a_subscribe_past_the_cap_is_refused_and_the_connection_stays(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(WS_MAX_TOPICS_PER_CONNECTION=CAP)
    hub = WebSocketHub.from_settings(settings, topic_authorizer=allow_any_topic)
    app = realtime_app(settings, hub, builtins=True)
    async with serve(app, settings=settings) as base:
        async with open_tab(base, "mallory") as mallory:
            for n in range(CAP):
                answer = await mallory.request("subscribe", {"topic": f"t:{n}"}, rid=f"s{n}")
                assert answer["type"] == "ack"
            refused = await mallory.request("subscribe", {"topic": "t:over"}, rid="over")
            assert refused == {
                "type": "error",
                "data": {
                    "code": "topic_limit",
                    "message": f"at most {CAP} topics per connection",
                    "topic": "t:over",
                },
                "request_id": "over",
            }
            cid = mallory.connection_id
            connection = hub.get(cid)
            assert connection is not None
            assert "t:over" not in connection.topics
            assert len(connection.topics) == CAP
            logged = [r.getMessage() for r in caplog.records if r.name == "tempest_ws.hub"]
            assert any(cid in line and f"limit {CAP}" in line for line in logged)
            # The hub API refuses the same way, with a clear exception.
            with pytest.raises(TopicLimitError) as raised:
                await hub.subscribe(cid, "t:server-side")
            assert raised.value.code == "topic_limit"
            assert raised.value.limit == CAP
            # Still open and served: a resubscribe is idempotent, a freed slot is usable.
            again = await mallory.request("subscribe", {"topic": "t:0"}, rid="again")
            assert again["type"] == "ack"
            await mallory.request("unsubscribe", {"topic": "t:0"}, rid="u")
            freed = await mallory.request("subscribe", {"topic": "t:new"}, rid="new")
            assert freed["type"] == "ack"
            assert hub.stats().subscriptions == CAP
        # Closing a connection at the cap leaves every topic.
        await until(lambda: hub.stats().subscriptions == 0 and hub.stats().connections == 0)
        assert hub.stats().topics == 0


async def test_connect_time_topics_past_the_cap_are_refused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tempest_ws.hub")
    settings = make_settings(WS_MAX_TOPICS_PER_CONNECTION=2)
    hub = WebSocketHub.from_settings(settings, topic_authorizer=allow_any_topic)
    app = realtime_app(settings, hub, builtins=True)
    async with (
        serve(app, settings=settings) as base,
        open_tab(base, "mallory", topics="a,b,c") as mallory,
    ):
        await mallory.wait(lambda: len(mallory.of("ack")) + len(mallory.of("error")) == 3)
        assert [a["topic"] for a in mallory.of("ack")] == ["a", "b"]
        assert [(e["code"], e["topic"]) for e in mallory.of("error")] == [("topic_limit", "c")]
        assert mallory.close_code is None


async def test_a_connection_over_a_cleanup_batch_leaves_every_topic_when_it_closes() -> None:
    # More topics than one cleanup batch: the rest is left from a task, in batches.
    settings = make_settings(WS_MAX_TOPICS_PER_CONNECTION=3 * CLEANUP_BATCH)
    hub = WebSocketHub.from_settings(settings, topic_authorizer=allow_any_topic)
    app = realtime_app(settings, hub, builtins=True)
    async with (
        serve(app, settings=settings) as base,
        open_tab(base, "bob") as bob,
        open_tab(base, "ann") as ann,
    ):
        for n in range(3 * CLEANUP_BATCH):
            assert await hub.subscribe(bob.connection_id, f"t:{n}")
        assert await hub.subscribe(ann.connection_id, "t:5")
        await bob.close()
        await until(lambda: hub.stats().subscriptions == 1)
        assert [c.user_key for c in hub.subscribers("t:5")] == ["ann"]
        # The topic ann shares still reaches her; bob's others are gone.
        await hub.broadcast({"type": "marker", "data": 1}, topic="t:5")
        await ann.wait(lambda: ann.of("marker") == [1])
        assert hub.stats().topics == 1
