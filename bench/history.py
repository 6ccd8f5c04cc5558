"""History benchmark: what keeping history costs a publish, in memory and in Redis.

Run ``.venv/bin/python -m bench.history`` (``--quick`` or ``--tiny`` for shorter runs).
Everything runs in this process plus one ``redis-server`` child (loopback, no
persistence) started and stopped here by its PID. Every loop is bounded by a count and a
deadline.

Each case runs one hub built with a history store and a policy keeping ``chat:*``: "with
history" publishes with ``hub.broadcast`` to ``chat:bench`` (the integrated path:
encode once, append, stamp, sequence, fan out, publish with the position), "without"
to ``plain:bench`` on the same hub and the same subscribers (the path every topic
without history takes). Runs alternate.

Cases:

``memory``            in-process hub (in-memory backplane), ``MemoryHistory``;
``redis_sequential``  hub on a ``RedisBackplane``, ``RedisHistory`` on the same Redis
                      (so one script appends and publishes: one round trip, as a
                      publish without history), one publisher awaiting each publish
                      (latency bound);
``redis_concurrent``  the same with 16 concurrent publishers (throughput bound).

Each hub has ``SUBSCRIBERS`` local connections on both topics, writing to counting
sinks; a run ends when every sink got every message. Also measured: the append alone, the
stamp alone, Redis CPU per append and Redis memory per retained message. Writes
``bench/results/history.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ._proc import RedisProcess, cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "history.json"
PAD = "x" * 160  # a ~230-byte envelope, a typical chat or notification message
TOPIC = "chat:bench"
PLAIN = "plain:bench"
SUBSCRIBERS = 50
DEADLINE = 60.0  # seconds, per run


class Audience:
    """``SUBSCRIBERS`` connections of one hub on ``TOPIC``, counting what they get."""

    def __init__(self) -> None:
        self.received = 0
        self.done = asyncio.Event()
        self.expected = 0

    async def send(self, message: Any) -> None:
        self.received += 1
        if self.received >= self.expected:
            self.done.set()

    async def attach(self, hub: Any) -> None:
        for n in range(SUBSCRIBERS):
            connection = hub.create_connection(f"user{n}", send=self.send)
            await hub.register(connection)
            connection.start()
            await hub.subscribe(connection.connection_id, TOPIC)
            await hub.subscribe(connection.connection_id, PLAIN)

    def expect(self, messages: int) -> None:
        self.received = 0
        self.expected = messages * SUBSCRIBERS
        self.done.clear()


Publish = Callable[[int], Awaitable[None]]


async def timed_run(
    audience: Audience, publish: Publish, messages: int, workers: int
) -> dict[str, Any]:
    """Publish ``messages`` from ``workers`` tasks; wait until every sink has them all."""
    audience.expect(messages)
    counter = iter(range(messages))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE
    sent = 0

    async def worker() -> None:
        nonlocal sent
        for n in counter:  # shared: each message published once, across the workers
            if loop.time() > deadline:
                return
            await publish(n)
            sent += 1
            if n % 64 == 0:
                await asyncio.sleep(0)  # let the connection writers drain

    cpu, start = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    audience.expected = sent * SUBSCRIBERS
    if audience.received < audience.expected:
        async with asyncio.timeout(max(1.0, deadline - loop.time())):
            await audience.done.wait()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "messages": sent,
        "seconds": round(elapsed, 4),
        "publishes_per_s": round(sent / elapsed),
        "cpu_us_per_publish": round(cpu / sent * 1e6, 2),
    }


def envelope(n: int) -> dict[str, Any]:
    return {"type": "chat.message", "data": {"n": n, "text": PAD}}


def spread(values: list[float]) -> dict[str, float]:
    """Min, quartiles, median and max of ``values`` (rounded), for the report."""
    ordered = sorted(values)
    q1, median, q3 = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else ordered * 3
    return {
        "min": round(ordered[0], 3),
        "q1": round(q1, 3),
        "median": round(median, 3),
        "q3": round(q3, 3),
        "max": round(ordered[-1], 3),
    }


async def compare(name: str, hub: Any, messages: int, workers: int, pairs: int) -> dict[str, Any]:
    """``pairs`` back-to-back pairs of runs, without and with history, on one hub and one
    audience; the order flips every pair (ABBA), so a drift of the machine's load
    favours neither side. The verdict is the median of the pairs' ratios."""
    audience = Audience()
    await audience.attach(hub)

    async def plain(n: int) -> None:
        await hub.broadcast(envelope(n), topic=PLAIN)

    async def with_history(n: int) -> None:
        await hub.broadcast(envelope(n), topic=TOPIC)

    sides = {"without": plain, "with": with_history}
    for publish in sides.values():  # warm-up
        await timed_run(audience, publish, min(messages, 200), workers)
    runs: dict[str, list[dict[str, Any]]] = {"without": [], "with": []}
    ratios = []
    for pair in range(pairs):
        order = ("without", "with") if pair % 2 == 0 else ("with", "without")
        for side in order:
            gc.collect()  # a collection never lands in one side's run by accident
            runs[side].append(await timed_run(audience, sides[side], messages, workers))
        ratios.append(runs["with"][-1]["publishes_per_s"] / runs["without"][-1]["publishes_per_s"])
    median = {k: statistics.median(r["publishes_per_s"] for r in v) for k, v in runs.items()}
    cpu = {k: statistics.median(r["cpu_us_per_publish"] for r in v) for k, v in runs.items()}
    cpu_added = [
        w["cpu_us_per_publish"] - o["cpu_us_per_publish"]
        for o, w in zip(runs["without"], runs["with"], strict=True)
    ]
    return {
        "case": name,
        "subscribers": SUBSCRIBERS,
        "publishers": workers,
        "pairs": pairs,
        "runs": runs,
        "publishes_per_s": median,
        "cpu_us_per_publish": cpu,
        "pair_ratios": [round(r, 3) for r in ratios],
        "ratio_spread": spread(ratios),
        "cpu_added_us_spread": spread(cpu_added),
        "measured_ratio": round(statistics.median(ratios), 3),
    }


async def per_call(call: Callable[[int], Awaitable[Any]], count: int) -> float:
    """Median over 3 batches of the wall time per awaited call, in µs."""
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        for n in range(count):
            await call(n)
        samples.append((time.perf_counter() - start) / count * 1e6)
    return round(statistics.median(samples), 2)


def per_op(op: Callable[[int], Any], count: int) -> float:
    samples = []
    for _ in range(3):
        start = time.perf_counter()
        for n in range(count):
            op(n)
        samples.append((time.perf_counter() - start) / count * 1e6)
    return round(statistics.median(samples), 3)


class _Ignore:
    """A backplane listener that drops everything (the micro runs have no hub)."""

    def on_packet(self, channel: str, packet: bytes) -> None:
        pass

    def on_resync(self) -> None:
        pass

    def on_presence_expired(self, topic: str, user: str) -> None:
        pass


async def redis_cpu_joint(redis: Any, policy: Any, frame: str, batches: int) -> dict[str, Any]:
    """Redis CPU per pipelined ``PUBLISH`` and per pipelined one-script append and publish
    (64 concurrent calls per batch), as a hub without and with history sends them. The
    publishing connection is the only client: the figures include Redis's own network
    work, not the delivery to subscribers (there is none)."""
    from tempest_ws.backplane.packet import positioned_head
    from tempest_ws.backplane.redis import RedisBackplane
    from tempest_ws.history.redis import RedisHistory

    backplane = RedisBackplane(redis.url, timeout=5)
    store = RedisHistory(redis.url, policy=policy, timeout=5)
    await backplane.start("0123456789ab", _Ignore())
    joint = store.joined_with(backplane)
    assert joint is not None
    head = positioned_head("0123456789ab", "topic", "chat:joint")
    packet = f'{{"v":1,"n":"0123456789ab","o":"topic","t":"plain:joint"}}\n{frame}'.encode()
    out: dict[str, Any] = {}
    import redis as redis_py

    try:
        for name, call in (
            ("redis_cpu_us_per_batched_publish", lambda: backplane.publish("topic:p", packet)),
            (
                "redis_cpu_us_per_batched_append_publish",
                lambda: joint("chat:joint", frame, "topic:chat:joint", head),
            ),
        ):
            with redis_py.Redis(port=redis.port) as client:
                client.config_resetstat()
            cpu0 = cpu_seconds(redis.pid)
            for _ in range(4 * batches):  # /proc counts CPU in 10 ms ticks
                await asyncio.gather(*(call() for _ in range(64)))
            out[name] = round((cpu_seconds(redis.pid) - cpu0) / (256 * batches) * 1e6, 2)
            with redis_py.Redis(port=redis.port) as client:
                stats = client.info("commandstats")
            # Redis's own account (INFO commandstats): µs per call of each command, the
            # commands a script runs included; the calls per publish show what it runs.
            calls = 256 * batches
            out[name.replace("cpu_us", "commandstats")] = {
                key.removeprefix("cmdstat_"): {
                    "calls_per_publish": round(value["calls"] / calls, 3),
                    "usec_per_call": value["usec_per_call"],
                }
                for key, value in stats.items()
                if value["calls"] >= calls // 100 and "config" not in key
            }
    finally:
        await store.aclose()
        await backplane.stop()
    return out


MODES = {"tiny": (0.1, 2), "quick": (1.0, 6), "full": (2.0, 21)}  # (scale, pairs of runs)


async def measure(mode: str) -> dict[str, Any]:
    from tempest_ws import WebSocketHub, allow_any_topic
    from tempest_ws.backplane.redis import RedisBackplane
    from tempest_ws.envelope import encode_envelope
    from tempest_ws.history import HistoryPolicy, MemoryHistory, Position, stamp_frame
    from tempest_ws.history.redis import RedisHistory

    scale, pairs = MODES[mode]
    policy = HistoryPolicy(topics=("chat:*",), max_messages=1000, max_age=300)
    frame = encode_envelope(envelope(0))
    results: dict[str, Any] = {"plan": {"mode": mode, "subscribers": SUBSCRIBERS, "pairs": pairs}}

    encode_us = per_op(lambda n: encode_envelope(envelope(n)), int(20_000 * scale))
    position = Position(123_456, "065a1f3c2b9d1e5d09c7a")
    stamp_us = per_op(lambda n: stamp_frame(frame, TOPIC, position), int(50_000 * scale))
    results["micro"] = {
        "encode_envelope_us": encode_us,
        "stamp_frame_us": stamp_us,
        "frame_bytes": len(frame),
    }

    memory = MemoryHistory(policy)
    results["micro"]["memory_append_us"] = await per_call(
        lambda n: memory.append(TOPIC, frame), int(20_000 * scale)
    )

    hub = WebSocketHub(
        send_queue_size=1_000_000, history=MemoryHistory(policy), topic_authorizer=allow_any_topic
    )
    try:
        # About a second per run, as the Redis cases below.
        results["memory"] = await compare("memory", hub, int(6000 * scale), 1, pairs)
    finally:
        await hub.stop()

    binary = shutil.which("redis-server") or sys.exit("redis-server is not installed")
    redis = RedisProcess(binary)
    try:
        store = RedisHistory(redis.url, policy=policy, timeout=5)
        cpu0 = cpu_seconds(redis.pid)
        count = int(1000 * scale)
        results["micro"]["redis_append_us"] = await per_call(
            lambda n: store.append("chat:micro", frame), count
        )
        results["micro"]["redis_cpu_us_per_append"] = round(
            (cpu_seconds(redis.pid) - cpu0) / (3 * count) * 1e6, 2
        )
        cpu0, start, batches = cpu_seconds(redis.pid), time.perf_counter(), int(50 * scale)
        for _ in range(batches):  # 64 concurrent appends: pipelined in batches
            await asyncio.gather(*(store.append(f"chat:b{i % 8}", frame) for i in range(64)))
        elapsed = time.perf_counter() - start
        results["micro"]["redis_batched_appends_per_s"] = round(64 * batches / elapsed)
        results["micro"]["redis_cpu_us_per_batched_append"] = round(
            (cpu_seconds(redis.pid) - cpu0) / (64 * batches) * 1e6, 2
        )
        results["micro"].update(await redis_cpu_joint(redis, policy, frame, batches))
        import redis as redis_py

        with redis_py.Redis(port=redis.port) as client:
            meta, stream = store.keys("chat:micro")
            retained = int(client.xlen(stream))
            used = int(client.memory_usage(stream, samples=0) or 0) + int(
                client.memory_usage(meta) or 0
            )
        results["micro"]["redis_bytes_per_retained_message"] = round(used / retained)
        results["micro"]["redis_retained_messages"] = retained

        # Runs of about a second (four times the counts of earlier days): on this shared
        # machine a run of a few tenths of a second could cost 20 % more CPU than the next
        # one, on the same code, which spread the pairs' ratios from 0.73 to 1.17.
        for name, workers, messages in (
            ("redis_sequential", 1, 2000),
            ("redis_concurrent", 16, 6000),
        ):
            backplane = RedisBackplane(redis.url, timeout=5)
            hub_store = RedisHistory(redis.url, policy=policy, timeout=5)
            hub = WebSocketHub(
                send_queue_size=1_000_000,
                backplane=backplane,
                history=hub_store,
                topic_authorizer=allow_any_topic,
            )
            await hub.start()
            try:
                results[name] = await compare(name, hub, int(messages * scale), workers, pairs)
            finally:
                await hub.stop()  # closes hub_store
        await store.aclose()
    finally:
        redis.stop()

    for case in ("memory", "redis_sequential", "redis_concurrent"):
        r = results[case]
        without = 1e6 / r["publishes_per_s"]["without"]
        with_ = 1e6 / r["publishes_per_s"]["with"]
        r["added_us_per_publish"] = round(with_ - without, 2)
    return results


def report(r: dict[str, Any]) -> None:
    m = r["micro"]
    print(f"frame {m['frame_bytes']} B", end=" · ")
    print(f"encode {m['encode_envelope_us']} µs · stamp {m['stamp_frame_us']} µs")
    print(
        f"append: memory {m['memory_append_us']} µs · redis {m['redis_append_us']} µs "
        f"(redis CPU {m['redis_cpu_us_per_append']} µs, "
        f"{m['redis_bytes_per_retained_message']} B per retained message)"
    )
    print(
        f"batched (64 concurrent): {m['redis_batched_appends_per_s']} appends/s, "
        f"redis CPU {m['redis_cpu_us_per_batched_append']} µs each; "
        f"append and publish in one script {m['redis_cpu_us_per_batched_append_publish']} µs, "
        f"a PUBLISH {m['redis_cpu_us_per_batched_publish']} µs"
    )
    print(
        f"{'case':18} {'without/s':>10} {'with/s':>10} {'ratio':>6} {'middle half':>12} {'+µs':>7}"
    )
    for case in ("memory", "redis_sequential", "redis_concurrent"):
        c = r[case]
        p, q = c["publishes_per_s"], c["ratio_spread"]
        print(
            f"{case:18} {p['without']:>10.0f} {p['with']:>10.0f} {c['measured_ratio']:>6.2f} "
            f"{q['q1']:>5.2f}–{q['q3']:<5.2f} {c['added_us_per_publish']:>8.1f}"
            f"  ({c['pairs']} pairs, min {q['min']:.2f}, max {q['max']:.2f})"
        )


def shown_command(command: str) -> str:
    """``command`` without its ``--out PATH``: where the results went changes nothing in
    them, and the page shows the command that writes its default file."""
    words = command.split()
    kept = [w for i, w in enumerate(words) if w != "--out" and (i == 0 or words[i - 1] != "--out")]
    return " ".join(kept)


def markdown_section(r: dict[str, Any]) -> list[str]:
    """The history section of ``docs/performance.md`` from a run's results."""
    m = r["micro"]
    machine = r.get("machine", {})
    lines = [
        "",
        "## What history costs a publish",
        "",
        "Produced by:",
        "",
        "```",
        shown_command(machine.get("command", ".venv/bin/python -m bench.history")),
        "```",
        "",
        f"{machine.get('cpus', '?')} cores, Python {machine.get('python', '?')}, load average "
        f"{machine.get('load_average', ['?'])[0]} at the end. `hub.broadcast` of a "
        f"{m['frame_bytes']}-byte envelope to {r['memory']['subscribers']} local subscribers, "
        "to a topic that keeps history and to one that does not, on the same hub, in "
        "back-to-back pairs of runs whose order flips every pair; the ratio is the median of "
        "the pairs' ratios, with the middle half of them in brackets "
        "([Message history](history.md#measured-cost) explains the figures).",
        "",
        "| Case | Without history | With history | Ratio (middle half) | Pairs | "
        "CPU per publish (without → with) |",
        "|---|---|---|---|---|---|",
    ]
    names = {
        "memory": "in-process hub, `MemoryHistory`",
        "redis_sequential": "Redis backplane, `RedisHistory`, 1 sequential publisher",
        "redis_concurrent": "Redis backplane, `RedisHistory`, 16 concurrent publishers",
    }
    for case, name in names.items():
        c = r[case]
        p, cpu = c["publishes_per_s"], c["cpu_us_per_publish"]
        q = c.get("ratio_spread", {"q1": c["measured_ratio"], "q3": c["measured_ratio"]})
        lines.append(
            f"| {name} | {p['without']:,.0f} /s | {p['with']:,.0f} /s | "
            f"{c['measured_ratio']:.2f} ({q['q1']:.2f}–{q['q3']:.2f}) | {c.get('pairs', '?')} | "
            f"{cpu['without']:.1f} → {cpu['with']:.1f} µs |"
        )
    stats = m.get("redis_commandstats_per_batched_append_publish")
    if stats and "evalsha" in stats:
        script = stats["evalsha"]
        per_message = script["usec_per_call"] * script["calls_per_publish"]
        inner = ", ".join(
            f"{name.upper()} {v['calls_per_publish']:g}×"
            for name, v in sorted(stats.items())
            if name not in ("evalsha", "script|load")
        )
        publish = m.get("redis_commandstats_per_batched_publish", {}).get("publish", {})
        lines += [
            "",
            "Redis's own account of the same run (`INFO commandstats`, 64 concurrent "
            f"publishes pipelined): the append-and-publish script took {per_message:.2f} µs "
            f"per message ({inner} per message), a `PUBLISH` without history "
            f"{publish.get('usec_per_call', '?')} µs.",
        ]
    return lines


def collect(mode: str, command: str) -> dict[str, Any]:
    """Run the comparison in ``mode`` (``tiny``, ``quick`` or ``full``) in this process;
    return its results with a note of the machine and ``command``. Also used by
    ``python -m bench --with-history``, which stores them in its own results."""
    started = time.time()
    results = asyncio.run(measure(mode))
    results["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "seconds": round(time.time() - started, 1),
        "command": command,
    }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick", help="1/4 size")
    mode.add_argument("--tiny", action="store_const", dest="mode", const="tiny", help="smoke test")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    command = " ".join([".venv/bin/python -m bench.history", *sys.argv[1:]])
    results = collect(args.mode or "full", command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    report(results)
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
